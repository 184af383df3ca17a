"""The demo behind `make demo`: synthetic vim-1 -> AlexNet conv3 -> ridge/PLS (and fwRF for
S1 V4) -> MongoDB -> noise ceilings -> comparison table -> figures, with the time of each
stage, then what is running and what to try next.

Run it twice: the second run reuses the finished feature extraction and fits. Backend
logging (TensorFlow, XLA, oneDNN, absl) is silenced; ``--verbose`` shows it.
"""

from __future__ import annotations

import argparse
import time

from _common import quiet_backends, run_main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verbose", action="store_true", help="show TensorFlow / XLA / absl logging")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_backends(args.verbose)  # before anything imports TensorFlow

    from pipeline.core.errors import DataFormatError
    from pipeline.features.config import FeatureConfig
    from pipeline.fit.config import FitConfig
    from tracker.analysis import queries
    from tracker.cli.common import db_location, print_table
    from tracker.cli.progress import ProgressBars, err_console
    from tracker.db.settings import load_settings
    from tracker.db.store import Store
    from tracker.figures.standard import make_all
    from tracker.record.datasets import compute_ceilings
    from tracker.record.workflows import ensure_data, extract_and_log, standard_comparison

    settings = load_settings()
    timings: list[tuple[str, float]] = []

    def stage(name: str, t0: float) -> float:
        timings.append((name, time.perf_counter() - t0))
        return time.perf_counter()

    def fit_log(message: str) -> None:  # the feature run was reported above, once
        if "feature run" not in message:
            err_console.print(message, highlight=False, soft_wrap=True)

    t = time.perf_counter()
    with Store.open(settings) as store, ProgressBars(enabled=not args.quiet) as bars:
        t = stage("start database", t)
        data_dir = ensure_data(settings, progress=bars.update)
        t = stage("synthetic data", t)
        # raw images and retina-warped ones (the 2019 question), AlexNet conv3 for both
        feature_configs = [FeatureConfig(), FeatureConfig(retina_warp="default")]
        for config in feature_configs:
            feat = extract_and_log(store, settings, data_dir, config, progress=bars.update)
            err_console.print(("reusing finished" if feat.reused else "extracted") +
                              f" feature run {feat.run_id} ({feat.run['output']['path']})", highlight=False,
                              soft_wrap=True)
        t = stage("features (AlexNet conv3, raw and retina-warped)", t)
        configs = [FitConfig(method=m, target=tg) for m in ("ridge", "pls") for tg in ("voxels", "roi_mean")]
        for config in feature_configs:
            standard_comparison(store, settings, data_dir, config, configs, progress=bars.update,
                                log=fit_log)
        t = stage("fits (2 subjects x ridge/PLS x voxels/V4 average x raw/warped)", t)
        # fwRF: a Gaussian receptive field x channel weights per voxel (S1 V4, raw conv3); a
        # 6 x 6 x 4 field grid keeps the demo quick (the method's default is 10 x 10 x 8)
        fwrf = FitConfig(method="fwrf", rf_centres=6, rf_sizes=4)
        standard_comparison(store, settings, data_dir, feature_configs[0], [fwrf], subjects=("S1",),
                            progress=bars.update, log=lambda m: err_console.print(m))
        t = stage("fwRF fit (S1 V4, 6 x 6 x 4 fields; RF figures below)", t)
        try:
            ceilings = compute_ceilings(store, data_dir)
            err_console.print(f"noise ceilings stored for {len(ceilings)} (subject, split) pairs "
                              "from the synthetic repeats", highlight=False)
        except DataFormatError as exc:  # real vim-1 has no repeats
            err_console.print(f"no noise ceilings: {exc}", highlight=False)
        t = stage("noise ceilings (synthetic repeats)", t)
    with Store.open(settings) as store:
        for split in ("test", "validation"):
            rows, by = queries.compare_series(store, ["subject", "method", "preprocessing"],
                                              roi="V4", split=split, metric="r")
            print_table(rows, [*by, "n", "mean", "median", "n_significant", "frac_ceiling",
                               "untrained"],
                        title=f"Pearson r, V4 voxels, {split} images")
        t = stage("comparison", t)
        paths = make_all(store, settings.plots_dir)
        t = stage("plots", t)
    print(f"{len(paths)} figure files (300 dpi PNG, SVG with editable text) in {settings.plots_dir}/:")
    for p in paths:
        print(f"  {p.name}")
    print_table([{"stage": n, "seconds": s} for n, s in timings] +
                [{"stage": "total", "seconds": sum(s for _, s in timings)}],
                ["stage", "seconds"], title="demo timings")
    print(next_steps(settings, db_location(settings), tracker_command()))
    return 0


def tracker_command() -> str:
    """How to call ``tracker`` from here: plain when it is on PATH, else the venv's."""
    import os
    import shutil
    import sys
    from pathlib import Path

    if shutil.which("tracker"):
        return "tracker"
    local = Path(sys.executable).parent / "tracker"
    return os.path.relpath(local) if local.exists() else "tracker"


def next_steps(settings, location: str, tracker: str = "tracker") -> str:
    """What is running and what to try next (the demo's last lines)."""
    running = (f"The embedded database server keeps running in the background: `{tracker} db stop` "
               "stops it (the next command starts it again)."
               if not settings.mongo_uri else "Runs are in your MongoDB server.")
    steps = [("runs list", "every run recorded"),
             ("compare --by subject,method,preprocessing", "pooled V4 voxels, 95% CIs"),
             ("scores top --roi V4 --n 10", "the best voxels"),
             ("report --out report.html", "tables, figures, definitions in one file"),
             ("plot bars --subject S2 --ceiling", "scores as a fraction of the noise ceiling")]
    width = max(len(c) for c, _ in steps) + len(tracker) + 3
    lines = [f"  {tracker + ' ' + c:<{width}}# {why}" for c, why in steps]
    lines.append(f"  {'make clean-demo':<{width}}# stop the server, delete .tracker and demo_data")
    return "\n".join(["", f"Data: {location}.", running, "Next:", *lines])


if __name__ == "__main__":
    run_main(main)
