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

from pipeline.data.layout import SUBJECTS
from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from pipeline.fit.methods import METHODS
from tracker.analysis import queries
from tracker.cli.common import print_table
from tracker.cli.progress import ProgressBars, err_console
from tracker.db.settings import load_settings
from tracker.db.store import Store
from tracker.record import workflows
from tracker.record.layers import fit_layers


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", metavar="RUN_ID", help="feature run id (or unique prefix)")
    p.add_argument("--subject", choices=SUBJECTS, help="subject (default: both)")
    p.add_argument("--roi", default="V4", help="ROI: V1 V2 V3 V3A V3B V4 LO other all (default V4)")
    p.add_argument("--method", choices=sorted(METHODS), help="fitting method (default: ridge and pls)")
    p.add_argument("--target", choices=["voxels", "roi_mean"],
                   help="per-voxel models or one model of the ROI average (default: both)")
    p.add_argument("--protocol", default="recommended",
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
    configs: list[FitConfig] = workflows.fit_configs(args.method, args.target, args.protocol, args.seed)
    with Store.open(settings) as store, ProgressBars(enabled=not args.quiet) as bars:
        outcomes = workflows.fit_from_options(
            store, settings, args.features, workflows.fit_subjects(args.subject), args.roi, configs,
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
        by = ["subject", "method", "layer" if args.layer is not None else "preprocessing"]
        rows = queries.compare(store, by, roi=args.roi, split="validation", metric="r")
    print_table(rows, [*by, "n_runs", "n", "mean", "sem", "median"],
                title=f"Pearson r on validation images, {args.roi} voxels")
    return 0


if __name__ == "__main__":
    run_main(main)
