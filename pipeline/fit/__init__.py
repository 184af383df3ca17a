"""Fitting encoding models: configuration, method registry, results, protocols and voxel chunks.

:mod:`.config` (:class:`~pipeline.fit.config.FitConfig` and its validators),
:mod:`.methods` (``METHODS``: method name -> estimator factory), :mod:`.results`
(``FitResult``, ``SplitScores``), :mod:`.checks` (input validation), :mod:`.protocols`
(``run_fit``: the recommended and cs431 protocols) and :mod:`.chunks` (``prepare``,
``fit_voxels``, ``merge_results``: one fit cut into voxel chunks).
"""
