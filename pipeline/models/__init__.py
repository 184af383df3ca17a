"""Encoding-model estimators: kernel helpers, solvers and the ridge and PLS estimators.

:mod:`.kernels` (linear kernels, scaling, centred eigendecomposition), :mod:`.solvers`
(array functions), :mod:`.ridge` (``KernelRidgeCV``) and :mod:`.pls` (``BatchedPLS``,
``PLS2``).
"""
