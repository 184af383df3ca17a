"""AlexNet in two variants (``caffe``, ``tfutils``): layer specs, weight loaders and the Keras model.

:mod:`.layers` (variants, layer shapes; pure Python), :mod:`.weights` (seeded random
weights, ``.npy`` files, validation, ``weights_sha256``), :mod:`.checkpoints` (TensorFlow
checkpoints and Keras ``.h5`` files) and :mod:`.model` (the Keras model).
"""
