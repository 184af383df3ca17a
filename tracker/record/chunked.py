"""One fit split by voxel chunks: kernels once, chunks in parallel, one merged result.

A voxel-target fit of the recommended protocol computes its kernels once
(:func:`pipeline.fit.chunks.prepare`: kernel, eigendecomposition and cross kernels of the
"test" and "all" models), fits voxel chunks as separate tasks
(:func:`pipeline.fit.chunks.fit_voxels`), locally or on a Dask client, and merges them
(:func:`pipeline.fit.chunks.merge_results`: BH-FDR over all voxels) into one result whose
numbers are those of the unchunked fit. Used by
:func:`tracker.record.workflows.fit_and_log` (``n_chunks``) and, through it, by sweeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError

ProgressFn = Callable[[str, int, int], None]


def check_voxel_chunks(value: Any, where: str = "voxel_chunks") -> int | None:
    """None, or a positive integer number of voxel chunks (ConfigError otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return int(value)


def chunked_fit(
    client: Any,
    X_train: Any,
    X_val: Any,
    Y_train: Any,
    Y_val: Any,
    config: Any,
    n_chunks: int,
    block: int | None = None,
    progress: ProgressFn | None = None,
    prepared: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """One fit split by voxel chunks: kernels once, chunks in parallel, one merged result.

    :func:`pipeline.fit.chunks.prepare` runs here, where the features are; its
    :class:`~pipeline.fit.chunks.Prepared` (no features: ~50 MB for 1750 images) is broadcast to
    every worker and each voxel chunk is a :func:`pipeline.fit.chunks.fit_voxels` task;
    :func:`pipeline.fit.chunks.merge_results` concatenates them (BH flags over all voxels).
    Chunks start at multiples of ``Prepared.block``, so the merged numbers equal the
    unchunked fit's exactly. ``client`` None runs the chunks one after another here.

    Parameters
    ----------
    client : distributed.Client or None
    config : pipeline.fit.config.FitConfig
        Must be chunkable (:func:`pipeline.fit.chunks.chunkable`).
    n_chunks : int
        Requested chunks; at most ``ceil(n_voxels / block)`` are made.
    block : int, optional
        Column block (default: the estimator's; tests use small ones).
    progress : callable, optional
        ``progress(stage, done, total)``: "prepare:<model>", then "chunks" as they finish.
    prepared : pipeline.fit.chunks.Prepared, optional
        Kernels computed already (e.g. from feature blocks on disk); then ``X_train`` and
        ``X_val`` are not read.

    Returns
    -------
    result, execution : pipeline.fit.results.FitResult, dict
        The merged result, and how it ran (the run's ``execution``): mode, n_chunks, block,
        chunk sizes, workers, prepared MB and seconds of prepare / scatter / chunks.
    """
    from pipeline.fit.chunks import chunkable, fit_voxels, merge_results, prepare, voxel_chunks

    if not chunkable(config):
        raise ConfigError("only voxel-target fits of the recommended protocol split by voxels")
    n_chunks = check_voxel_chunks(n_chunks, "n_chunks") or 1
    t_start = time.perf_counter()
    prep = prepared if prepared is not None else prepare(X_train, X_val, config, block=block,
                                                         progress=progress)
    t_prepare = time.perf_counter() - t_start
    Y_train, Y_val = _as_columns(Y_train), None if Y_val is None else _as_columns(Y_val)
    chunks = voxel_chunks(Y_train.shape[1], n_chunks, prep.block)
    t0 = time.perf_counter()
    if client is None:
        parts, t_scatter, workers = _fit_here(fit_voxels, prep, Y_train, Y_val, chunks, progress)
    else:
        parts, t_scatter, workers = _fit_on_client(client, fit_voxels, prep, Y_train, Y_val, chunks,
                                                   progress)
    t_chunks = time.perf_counter() - t0 - t_scatter
    result = merge_results(parts)
    result.timings.update(prep.timings)
    result.timings["total"] = time.perf_counter() - t_start
    return result, _execution("local" if client is None else "dask", chunks, n_chunks, prep, workers,
                              (t_prepare, t_scatter, t_chunks))


def _execution(mode: str, chunks: list[slice], requested: int, prep: Any, workers: int,
               seconds: tuple[float, float, float]) -> dict[str, Any]:
    """How a chunked fit ran (the run's ``execution`` field)."""
    t_prepare, t_scatter, t_chunks = seconds
    return {
        "mode": mode,
        "n_chunks": len(chunks),
        "requested_chunks": requested,
        "block": int(prep.block),
        "chunk_voxels": [int(sl.stop - sl.start) for sl in chunks],
        "workers": workers,
        "prepared_mb": round(prep.nbytes / 2**20, 2),
        "prepare_s": round(t_prepare, 3),
        "scatter_s": round(t_scatter, 3),
        "chunks_s": round(t_chunks, 3),
    }


def _as_columns(y: Any) -> np.ndarray:
    """Targets as a float64 (n_images, n_targets) array."""
    y = np.asarray(y, dtype=np.float64)
    return y[:, None] if y.ndim == 1 else y


def _fit_here(fit_voxels: Callable, prep: Any, Y_train: np.ndarray, Y_val: np.ndarray | None,
              chunks: list[slice], progress: ProgressFn | None) -> tuple[list[Any], float, int]:
    """Fit the chunks one after another in this process (memory bounded by one chunk)."""
    parts = []
    for i, sl in enumerate(chunks):
        if progress is not None:
            progress("chunks", i, len(chunks))
        parts.append(fit_voxels(prep, Y_train[:, sl], None if Y_val is None else Y_val[:, sl]))
    return parts, 0.0, 1


def _fit_on_client(client: Any, fit_voxels: Callable, prep: Any, Y_train: np.ndarray,
                   Y_val: np.ndarray | None, chunks: list[slice], progress: ProgressFn | None
                   ) -> tuple[list[Any], float, int]:
    """Fit the chunks as Dask tasks; returns (parts in chunk order, scatter seconds, workers)."""
    from distributed import as_completed

    t0 = time.perf_counter()
    workers = max(len(client.scheduler_info().get("workers", {})), 1)
    [prep_f] = client.scatter([prep], broadcast=True, hash=False)
    ytr_f = client.scatter([np.ascontiguousarray(Y_train[:, sl]) for sl in chunks], hash=False)
    yval_f = ([None] * len(chunks) if Y_val is None else
              client.scatter([np.ascontiguousarray(Y_val[:, sl]) for sl in chunks], hash=False))
    t_scatter = time.perf_counter() - t0
    futures = [client.submit(fit_voxels, prep_f, ytr, yv, pure=False, retries=1,
                             key=f"voxels-{i}-{id(prep):x}-{time.monotonic_ns():x}")
               for i, (ytr, yv) in enumerate(zip(ytr_f, yval_f))]
    index = {f.key: i for i, f in enumerate(futures)}
    parts: list[Any] = [None] * len(chunks)
    try:
        for n_done, fut in enumerate(as_completed(futures), 1):
            parts[index[fut.key]] = fut.result()
            if progress is not None:
                progress("chunks", n_done, len(chunks))
    finally:
        client.cancel([*futures, prep_f, *ytr_f, *[f for f in yval_f if f is not None]])
    return parts, t_scatter, workers
