"""Fit encoding models from a feature run to vim-1 voxels and record them in MongoDB.

With no arguments: the standard comparison (subjects S1 and S2, V4, ridge and PLS, per
voxel and the V4 average) on $TRACKER_DATA_DIR, or on the synthetic demo dataset
(generated into ./demo_data if missing), extracting features first if no finished
feature run matches.

Examples
--------
python scripts/run_fit.py
python scripts/run_fit.py --features fe-1a2b3c --subject S1 --roi V4 --method ridge
python scripts/run_fit.py --features fe-1a2b3c --subject S2 --roi V1 --method pls --target roi_mean
python scripts/run_fit.py --features fe-all8 --subject S1 --roi V1 --method ridge --target voxels --layer all
"""

from __future__ import annotations

import argparse
import json

from _common import run_main

from pipeline.core.errors import ConfigError
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from tracker.analysis import names, queries
from tracker.cli.common import print_table
from tracker.cli.progress import ProgressBars, err_console
from tracker.db.settings import load_settings
from tracker.db.store import Store
from tracker.record import options, workflows
from tracker.record.layers import fit_layers


def _name(kind: str, many: bool = False):
    """An argparse ``type``: the name resolved as every command resolves it (``v4`` -> ``V4``)."""
    def resolve_name(text: str) -> str:
        try:
            if many:
                found = names.resolve_many(kind, text)
                return "all" if found is None else ",".join(found)
            return names.resolve(kind, text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    resolve_name.__name__ = kind
    return resolve_name


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", metavar="RUN_ID", help="feature run id (or unique prefix)")
    p.add_argument("--subject", type=_name("subject"), help="subject: S1 or S2 (default: both)")
    p.add_argument("--roi", default="V4", type=_name("roi"),
                   help=f"ROI: {' '.join(names.ROIS)} all (default V4)")
    p.add_argument("--method", type=_name("method"),
                   help=f"fitting method: {', '.join(names.VOCABULARY['method'])} (default: all)")
    p.add_argument("--target", type=_name("target"),
                   help="voxels (per-voxel models) or roi_mean (the ROI average) (default: both)")
    p.add_argument("--protocol", default="recommended", type=_name("protocol"),
                   help="recommended (CV inside training) or cs431 (the 2019 protocol)")
    p.add_argument("--layer", help="layer(s) of a several-layer feature run, comma-separated, or all: "
                   "one fit per layer (default: its primary layer)")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--data-dir", help="vim-1 directory (default: the feature run's, or $TRACKER_DATA_DIR)")
    p.add_argument("--force", action="store_true", help="refit even if an identical fit completed")
    p.add_argument("--json", action="store_true", help="print the run documents as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = load_settings(data_dir=args.data_dir)
    configs: list[FitConfig] = options.fit_configs(args.method, args.target, args.protocol, args.seed)
    with Store.open(settings) as store, ProgressBars(enabled=not args.quiet) as bars:
        outcomes = workflows.fit_from_options(
            store, settings, args.features, options.fit_subjects(args.subject), args.roi, configs,
            data_dir=args.data_dir, force=args.force, progress=bars.update,
            log=lambda m: err_console.print(m), standard_features=FeatureConfig(),
            layers=fit_layers(store, args.features, args.layer))
        if args.json:
            print(json.dumps([o.run for o in outcomes], default=str, indent=2))
            return 0
        for o in outcomes:
            print(o.run_id, "(reused)" if o.reused else "")
        spooled = [o.run_id for o in outcomes if o.spooled]
        if spooled:
            err_console.print(f"the database could not be reached: {len(spooled)} run(s) are safe in the "
                              f"spool at {settings.spool_dir}; `tracker sync` uploads them")
            return 0
        rows, by = queries.compare_series(
            store, ["subject", "method", "layer" if args.layer is not None else "preprocessing"],
            roi=None if args.roi == "all" else args.roi, split="validation", metric="r",
            target=None, extra={"_id": {"$in": [o.run_id for o in outcomes]}})
    print_table(rows, [*by, "n_runs", "n", "mean", "sem", "median"],
                title=f"Pearson r on validation images, {args.roi} voxels")
    return 0


if __name__ == "__main__":
    run_main(main)
