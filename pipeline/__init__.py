"""The science: pure functions over numpy arrays (no database access here).

One sub-package per stage, in the order the data flow through them:

- :mod:`pipeline.core`: exceptions, atomic files and hashes, content keys, vocabulary;
- :mod:`pipeline.data`: the vim-1 loader and the synthetic vim-1 generator;
- :mod:`pipeline.preprocess`: image chains and the retina warp;
- :mod:`pipeline.features`: AlexNet, the Keras extractor and HDF5 feature files;
- :mod:`pipeline.models`: kernels, solvers, kernel ridge and PLS estimators;
- :mod:`pipeline.evaluation`: splits, scores, significance, intervals, noise ceilings;
- :mod:`pipeline.fit`: fit configuration, protocols and voxel chunks.

TensorFlow is imported lazily, only by the modules that build or run a model.
"""

__version__ = "0.1.0"
