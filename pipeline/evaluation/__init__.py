"""Evaluation: how a fit is scored and judged.

:mod:`.splits` (the cs431 splits, the held-out split, k-fold), :mod:`.scores` (r,
r2 of correlation, R2, chance levels), :mod:`.significance` (permutation p-values,
Benjamini-Hochberg FDR), :mod:`.intervals` (bootstrap confidence intervals, ROI summaries,
paired comparisons) and :mod:`.ceiling` (noise ceilings).
"""
