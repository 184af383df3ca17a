"""Synthetic vim-1 data in the real on-disk layout, with a planted encoding model.

:mod:`.config` (``SynthConfig``, ``PRESETS``), :mod:`.images` (stimuli and their
feature maps), :mod:`.responses` (simulated subjects), :mod:`.writer` (``generate``),
:mod:`.truth` (``load_ground_truth``) and :mod:`.cli` (``python -m pipeline.data.synth``).
"""
