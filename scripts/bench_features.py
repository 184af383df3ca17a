"""Feature-pipeline throughput against the bare model, on the same batches, in one run.

The pipeline is everything :func:`pipeline.features.write_feature_file` does for raw
images: read (a synthetic in-memory iterator of raw 500x500 vim-1-like images), preprocess
(resize or retina warp), hash each preprocessed image, run the model, check every feature
row, write the HDF5 file atomically (fsync, rename) and hash it. The bare model is the
extractor's compiled ``tf.function`` alone on the already preprocessed batches (plus the
copy of its output to numpy). Repeats alternate bare / pipeline; the report gives the
median images/s of each and the ratio (target: pipeline >= 90 % of bare on CPU).

Examples
--------
python scripts/bench_features.py
python scripts/bench_features.py --warp default --n-images 512 --batch-size 64
python scripts/bench_features.py --variant tfutils --no-prefetch --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="caffe", help="AlexNet variant (default caffe)")
    p.add_argument("--layer", default="conv3", help="layer(s), comma-separated (default conv3)")
    p.add_argument("--weights", default="random:0")
    p.add_argument("--warp", default=None, help="retina warp: default, compat, ... (default none)")
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--size", type=int, default=500, help="raw image side (default 500)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-prefetch", action="store_true", help="preprocess in the calling thread")
    p.add_argument("--copy", action="store_true", help="the reader yields copies, not views")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


def raw_batches(images: np.ndarray, batch_size: int, copy: bool = False):
    """The synthetic in-memory reader: yields views (``copy``: fresh arrays, as a file
    reader would)."""
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size]
        yield batch.copy() if copy else batch


def main(argv=None) -> int:
    args = parse_args(argv)
    from pipeline.features import FeatureConfig, build_extractor, write_feature_file

    config = FeatureConfig.for_variant(
        args.variant,
        layer=args.layer,
        weights=args.weights,
        batch_size=args.batch_size,
        retina_warp=args.warp,
    )
    extractor = build_extractor(config)
    rng = np.random.default_rng(0)
    raw = rng.uniform(-0.55, 0.45, (args.n_images, args.size, args.size)).astype(np.float32)
    batches = [extractor.preprocess(b) for b in raw_batches(raw, args.batch_size)]
    extractor.forward_all(batches[0])  # trace and warm up

    def bare() -> float:
        start = time.perf_counter()
        for x in batches:
            out = extractor._fn(x)
            for name in extractor.layers:
                np.asarray(out[name])
        return args.n_images / (time.perf_counter() - start)

    def full(directory: Path) -> tuple[float, float]:
        start = time.perf_counter()
        info = write_feature_file(
            directory / "bench.h5",
            extractor,
            {"train": (args.n_images, raw_batches(raw, args.batch_size, args.copy))},
            config,
            prefetch=not args.no_prefetch,
        )
        return args.n_images / (time.perf_counter() - start), info.images_per_s

    bare_rates, full_rates, loop_rates = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            bare_rates.append(bare())
            rate, loop = full(Path(tmp))
            full_rates.append(rate)
            loop_rates.append(loop)
    result = {
        "config": config.to_dict(),
        "n_images": args.n_images,
        "raw_size": args.size,
        "prefetch": not args.no_prefetch,
        "device": extractor.device_info(),
        "bare_images_per_s": statistics.median(bare_rates),
        "pipeline_images_per_s": statistics.median(full_rates),
        "pipeline_loop_images_per_s": statistics.median(loop_rates),
        "bare_all": bare_rates,
        "pipeline_all": full_rates,
    }
    result["ratio"] = result["pipeline_images_per_s"] / result["bare_images_per_s"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        dev = result["device"]
        print(f"device: {dev['device']} {dev['name']} (batch {extractor.batch_size}, {args.n_images} images "
              f"{args.size}x{args.size}, warp {config.retina_warp}, prefetch {not args.no_prefetch})")
        print(f"bare model   : {result['bare_images_per_s']:8.1f} images/s  (runs: "
              + ", ".join(f"{r:.1f}" for r in bare_rates) + ")")
        print(f"pipeline     : {result['pipeline_images_per_s']:8.1f} images/s  (runs: "
              + ", ".join(f"{r:.1f}" for r in full_rates) + ")")
        print(f"ratio        : {100 * result['ratio']:6.1f} %  (target >= 90 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
