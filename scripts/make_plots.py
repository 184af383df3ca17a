"""Regenerate every standard figure from the database alone (no data files needed).

python scripts/make_plots.py [--out DIR] [--roi V4] [--metric r2_corr]
"""

from __future__ import annotations

import argparse

from _common import run_main

from pipeline.core.vocab import METRICS
from tracker.db.settings import load_settings
from tracker.db.store import Store
from tracker.figures.standard import make_all


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output directory (default $TRACKER_HOME/plots)")
    p.add_argument("--roi", default="V4")
    p.add_argument("--metric", default="r2_corr", choices=list(METRICS))
    args = p.parse_args(argv)
    settings = load_settings()
    with Store.open(settings) as store:
        paths = make_all(store, args.out or settings.plots_dir, roi=args.roi, metric=args.metric)
    for path in paths:
        print(path)
    if not paths:
        print("no completed fits in the database yet: run scripts/run_fit.py first")
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
