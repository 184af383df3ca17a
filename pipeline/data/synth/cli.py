"""The command line: ``python -m pipeline.data.synth OUT_DIR [--preset demo] ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from pipeline.core.errors import ConfigError, DataFormatError
from pipeline.data.synth.config import PRESETS
from pipeline.data.synth.writer import generate

__all__ = [
    "main",
]



# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.data.synth OUT_DIR [--preset demo] ...``; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.data.synth",
                                 description="Write a synthetic vim-1 data set "
                                             "(real file layout) with its ground truth.")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-val", type=int)
    ap.add_argument("--voxel-scale", type=float)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--overwrite", action="store_true",
                    help="replace vim-1 files already in OUT_DIR")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    overrides = {k: v for k, v in (("seed", args.seed), ("n_train", args.n_train),
                                   ("n_val", args.n_val), ("voxel_scale", args.voxel_scale),
                                   ("image_size", args.image_size)) if v is not None}
    last: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1))
        if last.get(stage, -10) + 10 <= pct or done == total:
            last[stage] = pct
            print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)

    try:
        cfg = dataclasses.replace(PRESETS[args.preset], **overrides)
        t0 = time.perf_counter()
        out = generate(args.out_dir, cfg, progress=None if args.quiet else report,
                       overwrite=args.overwrite)
    except (ConfigError, DataFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    files = sorted(p for p in out.iterdir() if p.is_file())
    print(f"Wrote {len(files)} files ({sum(p.stat().st_size for p in files) / 1e6:.1f} MB) "
          f"to {out.resolve()} in {seconds:.1f} s (preset {args.preset}):")
    for p in files:
        print(f"  {p.name}  {p.stat().st_size / 1e6:.2f} MB")
    return 0
