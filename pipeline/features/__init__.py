"""Feature extraction: configuration, device probing, the AlexNet model, the extractor and HDF5 feature files.

:mod:`.config` (``FeatureConfig``, ``MODELS``), :mod:`.device` (devices, free memory,
``auto_batch_size``), :mod:`.alexnet` (layers, weights, the Keras model),
:mod:`.extractor` (``build_extractor``), :mod:`.writer` (``write_feature_file``) and
:mod:`.reader` (``read_feature_file``). Only the modules that build or run a model import
TensorFlow, and only inside functions; nothing is imported here.
"""
