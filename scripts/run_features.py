"""Extract features for every vim-1 image and record the run; prints the feature run id.

Examples
--------
python scripts/run_features.py --data-dir demo_data
python scripts/run_features.py --data-dir ~/vim1 --weights /data/bvlc_alexnet.npy --layers conv3
python scripts/run_features.py --variant tfutils --preprocess tf2019 --retina-warp compat
python scripts/run_features.py --layers conv3,conv5,fc6 --batch-size auto
python scripts/run_features.py --model keras:/models/cornet.keras --layers V4_output
python scripts/run_features.py --backend jax --device gpu --precision strict --batch-size auto

Weights: random:SEED (seeded random, for tests and demos); bvlc_alexnet.npy (a pickle:
loading it can run code, so only name a file you trust); a TF1/TF2 checkpoint prefix
(with --weights-map for variable names); a Keras .weights.h5 file.
"""

from __future__ import annotations

import argparse
import json

from _common import quiet_backends, run_main

from pipeline.features.alexnet.layers import VARIANTS
from pipeline.features.backend import BACKENDS, DEVICES, PRECISIONS
from pipeline.features.config import FeatureConfig
from pipeline.preprocess.images import CHAINS
from tracker.analysis import names
from tracker.cli.progress import ProgressBars, err_console
from tracker.db.settings import load_settings
from tracker.db.store import Store
from tracker.record import options, workflows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="vim-1 directory (default $TRACKER_DATA_DIR or ./demo_data)")
    p.add_argument("--model", default="alexnet",
                   help="alexnet (default) or keras:PATH (any Keras model file; name its layer)")
    p.add_argument("--variant", default="caffe",
                   help=f"AlexNet variant: {', '.join(VARIANTS)} (default caffe)")
    p.add_argument("--layers", "--layer", dest="layer", default="conv3",
                   help="layer(s), comma-separated, extracted in one pass (default conv3)")
    p.add_argument("--weights", default=None,
                   help="bvlc_alexnet.npy, a checkpoint prefix or a .weights.h5 file; random:SEED "
                        "for untrained features on purpose (required except on the synthetic demo data)")
    p.add_argument("--weights-map", help="checkpoint variable names as JSON: "
                   '{"conv1": ["conv1/weights", "conv1/biases"], ...}')
    p.add_argument("--preprocess",
                   help=f"preprocessing chain: {', '.join(CHAINS)} (default: the variant's)")
    p.add_argument("--retina-warp",
                   help="default | compat | default:max_ratio=10,in_size=500 (default: none)")
    p.add_argument("--batch-size", default="64", help="images per batch, or auto (fit to free memory)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="Keras backend (default $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--precision", default="strict", choices=PRECISIONS,
                   help="strict (default: full float32, TF32 off) or fast (TF32 allowed on GPUs)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="auto (default: a GPU when visible), cpu, or gpu (an error when none is visible)")
    p.add_argument("--force", action="store_true", help="recompute even if a finished run exists")
    p.add_argument("--json", action="store_true", help="print the run document as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow / XLA / absl logging")
    args = p.parse_args(argv)
    args.layer = ",".join(names.resolve_layer(n) for n in args.layer.split(",") if n.strip())
    return args


def feature_config(args: argparse.Namespace) -> FeatureConfig:
    """The FeatureConfig the flags describe (:func:`tracker.record.options.feature_config`)."""
    return options.feature_config(args.model, args.variant, args.layer, args.weights, args.weights_map,
                                    args.preprocess, args.retina_warp, args.batch_size, args.backend,
                                    args.precision, args.device)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_backends(args.verbose)
    settings = load_settings(data_dir=args.data_dir)
    given, args.weights = args.weights, args.weights or "random:0"
    feature_config(args)  # every option checked before --weights is asked for
    args.weights = options.resolve_weights(given, workflows.default_data_dir(settings), args.model)
    config = feature_config(args)
    with Store.open(settings) as store, ProgressBars(enabled=not args.quiet) as bars:
        outcome = workflows.extract_and_log(store, settings, workflows.default_data_dir(settings), config,
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
