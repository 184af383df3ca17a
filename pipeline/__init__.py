"""The science: pure functions over numpy arrays (no database access here).

TensorFlow is imported lazily, only by the feature-extraction modules.
"""

__version__ = "0.1.0"
