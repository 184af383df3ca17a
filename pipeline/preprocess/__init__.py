"""Image preprocessing: :mod:`.images` (chains, bilinear resize, image hashes) and
:mod:`.retinawarp` (the retina warp).
"""
