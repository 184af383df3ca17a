"""Benchmark the fwRF fit (``FitConfig(method="fwrf")``) at full size, and a per-voxel loop.

Synthetic conv3-sized data: 1750 training + 120 validation feature maps of 13 x 13 x 384
(float32, non-negative like ReLU outputs), voxels with planted Gaussian fields (a random
field and channel mix each, plus noise). Ours: the recommended protocol of
:func:`pipeline.fit.fwrf.run_fwrf` on the default 10 x 10 x 8 field grid and 25 alphas
(both models, predictions, 1000 permutations).

Peer: a per-voxel loop of the same computation. It shares the voxel-independent part (each
field's pooled-feature statistics and eigendecomposition, computed once) and then runs the
per-voxel part - ``X^T y``, pooling and GCV over every field and penalty for both models,
the final fits - one voxel at a time (``--loop-voxels`` voxels timed, extrapolated
linearly: each voxel is independent).

``--voxels N`` below 25,915 times whole fits of ours on N / 4 and N voxels and extrapolates
to 25,915 along the line through the two (the field stage is a fixed cost, the rest about
linear in voxels); the output says when it did.

Examples
--------
python scripts/bench_fwrf.py                   # full size (minutes)
python scripts/bench_fwrf.py --voxels 2048     # timed on 2,048 voxels, extrapolated
python scripts/bench_fwrf.py --quick           # a smoke test in seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.fit.config import FitConfig  # noqa: E402
from pipeline.fit.fwrf import run_fwrf  # noqa: E402
from pipeline.models import fwrf as core  # noqa: E402

FULL_VOXELS = 25915


def make_data(n_train: int, n_val: int, side: int, channels: int, v: int, grid, seed: int = 0):
    """Maps (n, side, side, channels) float32 and responses of planted fwRF voxels."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    maps = np.abs(rng.standard_normal((n, side, side, channels), dtype=np.float32))
    fields = grid.fields()
    truth = rng.integers(0, len(fields), v)
    Y = np.empty((n, v))
    for g in np.unique(truth):
        vox = np.flatnonzero(truth == g)
        w = core.field_weights(fields[[g]], side, side, grid.extent_deg).astype(np.float32)
        P = core.pool([maps], [w])[0].astype(np.float64)
        P = (P - P.mean(0)) / P.std(0)
        Y[:, vox] = P @ rng.standard_normal((channels, vox.size)) / np.sqrt(channels)
    Y += rng.standard_normal(Y.shape) * rng.uniform(0.5, 3.0, v)
    return maps[:n_train], maps[n_train:], Y[:n_train], Y[n_train:]


def per_voxel_loop(maps, Y, grid, alphas, n_fits, eval_rows, n_loop: int) -> dict:
    """The voxel-independent stage once, then the per-voxel stages one voxel at a time."""
    fields = grid.fields()
    perm = np.lexsort((fields[:, 1], fields[:, 0], fields[:, 2]))
    f = fields[perm]
    blocks = core._blocks(f, 40)
    h, w = maps.shape[1:3]
    wts = [core.field_weights(f, h, w, grid.extent_deg).astype(np.float32)]
    profiles = [core._profiles(f, h, w, grid.extent_deg, np.float32)]
    t0 = time.perf_counter()
    bases = core._prepare_bases([maps], wts, n_fits, alphas, True, blocks, None, None)
    t_fields = time.perf_counter() - t0
    t0 = time.perf_counter()
    for j in range(n_loop):
        Yj = Y[:, [j]]
        choice = core._select([maps], profiles, Yj, bases, n_fits, alphas, 1, blocks, 1, None)
        core._final([maps], wts, Yj, bases, n_fits, eval_rows, choice, False, 40, 1)
    per_voxel = (time.perf_counter() - t0) / n_loop
    return {"fields_s": t_fields, "per_voxel_s": per_voxel, "n_loop": n_loop}


def run(args) -> dict:
    """Time ours (on ``args.voxels``) and the loop (on ``args.loop_voxels``); returns the numbers."""
    cfg = FitConfig(method="fwrf", n_permutations=1000)
    grid = cfg.field_grid()
    Xtr, Xva, Ytr, Yva = make_data(args.n_train, args.n_val, args.side, args.channels, args.voxels, grid)
    points = []  # (voxels, seconds): two sizes when extrapolating, so the line has its own intercept
    sizes = [args.voxels] if args.voxels >= FULL_VOXELS else [max(64, args.voxels // 4), args.voxels]
    for v in sizes:
        t0 = time.perf_counter()
        result = run_fwrf(Xtr, Xva, Ytr[:, :v], Yva[:, :v], cfg)
        points.append((v, time.perf_counter() - t0))
    total = points[-1][1]
    timings = result.timings
    if len(points) == 2:
        (v1, t1), (v2, t2) = points
        full = t2 + (t2 - t1) / (v2 - v1) * (FULL_VOXELS - v2)
    else:
        full = total
    out = {"voxels": args.voxels, "maps": [args.side, args.side, args.channels], "total_s": total,
           "points": points, "fields_s": timings["fwrf:fields"],
           "select_s": timings["fwrf:select"], "final_s": timings["fwrf:final"],
           "scores_s": timings["predict:test"] + timings["predict:validation"],
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
           "full_s": full, "extrapolated": args.voxels != FULL_VOXELS,
           "median_val_r": float(np.median(result.split("validation").r))}
    n_train = Xtr.shape[0]
    from pipeline.evaluation.splits import holdout_split

    train, test = holdout_split(n_train, cfg.test_fraction, cfg.seed)
    order = np.concatenate([train, test])
    maps = np.concatenate([Xtr[order], Xva])
    loop = per_voxel_loop(maps, Ytr[order], grid, np.asarray(cfg.alphas), [train.size, n_train],
                          [[np.arange(train.size, n_train)], [np.arange(n_train, maps.shape[0])]],
                          args.loop_voxels)
    loop["full_s"] = loop["fields_s"] + loop["per_voxel_s"] * FULL_VOXELS
    out["loop"] = loop
    out["ratio"] = loop["full_s"] / out["full_s"]
    return out


def print_result(res: dict, target_s: float = 600.0) -> None:
    how = ("extrapolated linearly through whole fits of " +
           " and ".join(f"{v:,} voxels ({t:.0f} s)" for v, t in res["points"])
           if res["extrapolated"] else "all voxels timed")
    print(f"fwRF, full subject ({FULL_VOXELS:,} voxels, {' x '.join(map(str, res['maps']))} maps, "
          "10 x 10 x 8 fields, "
          f"25 alphas, GCV, test + all models, 1000 permutations): {res['full_s']:.0f} s ({how})")
    print(f"  stages on {res['voxels']:,} voxels: fields {res['fields_s']:.1f} s, select "
          f"{res['select_s']:.1f} s, final fits {res['final_s']:.1f} s, scores + permutations "
          f"{res['scores_s']:.1f} s; peak RSS {res['peak_rss_gb']:.2f} GB")
    loop = res["loop"]
    print(f"  per-voxel loop of the same computation: fields {loop['fields_s']:.1f} s once + "
          f"{loop['per_voxel_s']:.2f} s per voxel ({loop['n_loop']} voxels timed) -> "
          f"{loop['full_s']:.0f} s extrapolated; ratio {res['ratio']:.1f}x")
    print(f"  target < {target_s:.0f} s: {'yes' if res['full_s'] < target_s else 'no'}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voxels", type=int, default=FULL_VOXELS, help="voxels timed (25,915)")
    p.add_argument("--loop-voxels", type=int, default=3, help="voxels of the per-voxel loop (3)")
    p.add_argument("--n-train", type=int, default=1750)
    p.add_argument("--n-val", type=int, default=120)
    p.add_argument("--side", type=int, default=13, help="feature-map side (13)")
    p.add_argument("--channels", type=int, default=384, help="channels (384)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_val, args.side, args.channels, args.voxels = 300, 40, 6, 16, 500
        args.loop_voxels = 2
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    res = run(args)
    print(json.dumps(res) if args.json else "", end="\n" if args.json else "")
    print_result(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
