"""A ridge layer sweep over every AlexNet layer of one feature file: time and peak RSS.

Writes (or reuses, ``--feature-file``) an all-layer feature file of ``--n-images``
synthetic 500 px images (train / val split as vim-1's 1750 / 120), then for every layer
fits the recommended ridge protocol (LOO over 25 alphas, ``--n-permutations``
permutations) to ``--n-voxels`` synthetic voxels, its kernels accumulated from feature
column blocks read off the disk (:func:`pipeline.fit.streamed.prepare_streamed`) exactly
as ``tracker fit --layer`` / a layer sweep does. Reports per layer the seconds of the
kernels (reading included) and of the per-voxel fit, and the process's peak RSS.

With fewer voxels than a full subject (25,915 for S1), the per-voxel part is also
extrapolated linearly to the full count (its cost is linear in voxels: column blocks of
1000); the kernel part does not depend on voxels.

Examples
--------
python scripts/bench_layers.py --n-images 1870 --n-voxels 25915          # the issue's sweep
python scripts/bench_layers.py --n-images 1870 --n-voxels 4000 --keep all_layers.h5
python scripts/bench_layers.py --feature-file all_layers.h5 --n-voxels 25915 --layers conv1,fc6
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FULL_VOXELS = 25_915


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-images", type=int, default=1870, help="images (default 1870: vim-1's)")
    p.add_argument("--n-voxels", type=int, default=FULL_VOXELS, help="voxels (default 25,915: S1)")
    p.add_argument("--layers", default="all", help="all (conv1 ... fc8) or a comma list")
    p.add_argument("--n-permutations", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--feature-file", help="an all-layer feature file to reuse (default: write one)")
    p.add_argument("--keep", help="write the feature file here and keep it")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def write_features(path: Path, n_images: int, batch_size: int) -> float:
    """An all-layer feature file of seeded synthetic images; returns its seconds."""
    from pipeline.features.config import FeatureConfig
    from pipeline.features.extractor import build_extractor
    from pipeline.features.writer import write_feature_file

    def batches(n, seed):
        rng = np.random.default_rng(seed)
        for i in range(0, n, batch_size):
            yield rng.uniform(-0.55, 0.45, (min(batch_size, n - i), 500, 500)).astype(np.float32)

    n_val = max(1, n_images * 120 // 1870)
    config = FeatureConfig(layer="all", batch_size=batch_size)
    start = time.perf_counter()
    write_feature_file(path, build_extractor(config),
                       {"train": (n_images - n_val, batches(n_images - n_val, 0)),
                        "val": (n_val, batches(n_val, 1))}, config)
    return time.perf_counter() - start


def sweep(path: Path, layers: list[str], n_voxels: int, n_permutations: int) -> list[dict]:
    """Fit every layer; one row per layer (seconds, features, RSS so far)."""
    from pipeline.features.reader import file_layers, iter_column_blocks
    from pipeline.fit.chunks import fit_voxels
    from pipeline.fit.config import FitConfig
    from pipeline.fit.streamed import prepare_streamed

    _, _, counts = file_layers(path)
    rng = np.random.default_rng(0)
    Y_train = rng.standard_normal((counts["train"], n_voxels))
    Y_val = rng.standard_normal((counts["val"], n_voxels))
    config = FitConfig(n_permutations=n_permutations)
    rows = []
    for layer in layers:
        t0, c0 = time.perf_counter(), time.process_time()
        prep = prepare_streamed(iter_column_blocks(path, layer), counts["train"], counts["val"], config)
        t1 = time.perf_counter()
        result = fit_voxels(prep, Y_train, Y_val)
        t2 = time.perf_counter()
        rows.append({"layer": layer, "n_features": prep.n_features, "kernels_s": t1 - t0, "fit_s": t2 - t1,
                     "fit_s_full": (t2 - t1) * FULL_VOXELS / n_voxels, "cpu_s": time.process_time() - c0,
                     "median_val_r": float(np.median(result.splits[-1].r)), "peak_rss_gb": peak_rss_gb()})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress, one line per layer
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    from pipeline.core.vocab import ALL_LAYERS

    layers = list(ALL_LAYERS) if args.layers == "all" else [x.strip() for x in args.layers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.feature_file or args.keep or Path(tmp) / "all.h5")
        extract_s = None
        if not args.feature_file:
            extract_s = write_features(path, args.n_images, args.batch_size)
        rss_after_features = peak_rss_gb()
        rows = sweep(path, layers, args.n_voxels, args.n_permutations)
    total = sum(r["kernels_s"] + r["fit_s"] for r in rows)
    total_full = sum(r["kernels_s"] + r["fit_s_full"] for r in rows)
    result = {"n_images": args.n_images, "n_voxels": args.n_voxels, "n_permutations": args.n_permutations,
              "extract_s": extract_s, "rss_after_features_gb": rss_after_features, "layers": rows,
              "sweep_s": total, "sweep_s_at_25915_voxels": total_full, "peak_rss_gb": peak_rss_gb()}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if extract_s is not None:
        print(f"all-layer features of {args.n_images} images: {extract_s:.1f} s "
              f"(peak RSS so far {rss_after_features:.2f} GB)")
    print(f"ridge LOO, 25 alphas, {args.n_permutations} permutations, {args.n_voxels} voxels:")
    for r in rows:
        print(f"  {r['layer']:6s} {r['n_features']:7d} features: kernels {r['kernels_s']:6.1f} s, "
              f"fit {r['fit_s']:6.1f} s (at 25,915 voxels {r['fit_s_full']:6.1f} s), "
              f"CPU {r['cpu_s']:6.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB")
    print(f"sweep: {total:.0f} s; at 25,915 voxels {total_full:.0f} s (target < 600 s); "
          f"peak RSS {result['peak_rss_gb']:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
