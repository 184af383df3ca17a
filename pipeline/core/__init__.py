"""What every stage shares: the exception family, atomic file writes and file hashes,
the canonical content key, and the vocabulary of splits, metrics and layer order.

Nothing here imports numpy-heavy stage code, TensorFlow or the database driver.
"""
