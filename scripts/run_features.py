"""Extract features for every vim-1 image and record the run; prints the feature run id.

Examples
--------
python scripts/run_features.py --data-dir demo_data
python scripts/run_features.py --data-dir ~/vim1 --weights /data/bvlc_alexnet.npy --layer conv3
"""

from __future__ import annotations

import argparse
import json

from _common import run_main

from pipeline.features import FeatureConfig
from tracker.progress import ProgressBars, err_console
from tracker.settings import load_settings
from tracker.store import Store
from tracker.workflows import default_data_dir, extract_and_log


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="vim-1 directory (default $TRACKER_DATA_DIR or ./demo_data)")
    p.add_argument("--model", default="alexnet", help="model family (default alexnet)")
    p.add_argument("--variant", default="caffe", help="AlexNet variant (default caffe)")
    p.add_argument("--layer", default="conv3", help="layer to extract (default conv3)")
    p.add_argument("--weights", default="random:0",
                   help="random:SEED (seeded random weights) or a path to bvlc_alexnet.npy "
                        "(a pickle: only use a file you trust)")
    p.add_argument("--preprocess", default="caffe", help="preprocessing chain (default caffe)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--force", action="store_true", help="recompute even if a finished run exists")
    p.add_argument("--json", action="store_true", help="print the run document as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = load_settings(data_dir=args.data_dir)
    config = FeatureConfig(model=args.model, variant=args.variant, layer=args.layer,
                           weights=args.weights, preprocess=args.preprocess, batch_size=args.batch_size)
    with Store.open(settings) as store, ProgressBars(enabled=not args.quiet) as bars:
        outcome = extract_and_log(store, settings, default_data_dir(settings), config,
                                  force=args.force, progress=bars.update)
    if outcome.reused:
        err_console.print(f"reusing finished feature run {outcome.run_id} (same config and data; "
                          "--force recomputes)")
    if args.json:
        print(json.dumps(outcome.run, default=str, indent=2))
    else:
        print(outcome.run_id)
    return 0


if __name__ == "__main__":
    run_main(main)
