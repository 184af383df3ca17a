"""Input data: the vim-1 loader and the synthetic vim-1 generator.

:mod:`.layout` (file names, subjects, ROI codes), :mod:`.matfiles` (MATLAB v5/v7.3
reading), :mod:`.responses` (responses, ROIs, repeats), :mod:`.stimuli` (images),
:mod:`.dataset` (``describe_dataset``) and :mod:`.synth` (the generator).
"""
