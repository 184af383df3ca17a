"""The demo behind `make demo`: synthetic vim-1 -> AlexNet conv3 -> ridge/PLS (and fwRF for
S1 V4) -> MongoDB -> comparison table -> figures, with the time of each stage.

Run it twice: the second run reuses the finished feature extraction and fits.
"""

from __future__ import annotations

import time

from _common import run_main

from pipeline.features.config import FeatureConfig
from pipeline.fit.config import FitConfig
from tracker.analysis import queries
from tracker.cli.common import print_table
from tracker.cli.progress import ProgressBars, err_console
from tracker.db.settings import load_settings
from tracker.db.store import Store
from tracker.figures.standard import make_all
from tracker.record.workflows import ensure_data, extract_and_log, standard_comparison


def main() -> int:
    settings = load_settings()
    timings: list[tuple[str, float]] = []

    def stage(name: str, t0: float) -> float:
        timings.append((name, time.perf_counter() - t0))
        return time.perf_counter()

    t = time.perf_counter()
    with Store.open(settings) as store, ProgressBars() as bars:
        t = stage("start database", t)
        data_dir = ensure_data(settings, progress=bars.update)
        t = stage("synthetic data", t)
        # raw images and retina-warped ones (the 2019 question), AlexNet conv3 for both
        feature_configs = [FeatureConfig(), FeatureConfig(retina_warp="default")]
        for config in feature_configs:
            feat = extract_and_log(store, settings, data_dir, config, progress=bars.update)
            err_console.print(("reusing finished" if feat.reused else "extracted") +
                              f" feature run {feat.run_id} ({feat.run['output']['path']})")
        t = stage("features (AlexNet conv3, raw and retina-warped)", t)
        configs = [FitConfig(method=m, target=tg) for m in ("ridge", "pls") for tg in ("voxels", "roi_mean")]
        for config in feature_configs:
            standard_comparison(store, settings, data_dir, config, configs,
                                progress=bars.update, log=lambda m: err_console.print(m))
        t = stage("fits (2 subjects x ridge/PLS x voxels/V4 average x raw/warped)", t)
        # fwRF: a Gaussian receptive field x channel weights per voxel (S1 V4, raw conv3); a
        # 6 x 6 x 4 field grid keeps the demo quick (the method's default is 10 x 10 x 8)
        fwrf = FitConfig(method="fwrf", rf_centres=6, rf_sizes=4)
        standard_comparison(store, settings, data_dir, feature_configs[0], [fwrf], subjects=("S1",),
                            progress=bars.update, log=lambda m: err_console.print(m))
        t = stage("fwRF fit (S1 V4, 6 x 6 x 4 fields; RF figures below)", t)
    with Store.open(settings) as store:
        for split in ("test", "validation"):
            rows = queries.compare(store, ["subject", "method", "preprocessing"], roi="V4",
                                   split=split, metric="r")
            print_table(rows, ["subject", "method", "preprocessing", "n", "mean", "sem", "median",
                               "chance_r2_corr"], title=f"Pearson r, V4 voxels, {split} images")
        t = stage("comparison", t)
        paths = make_all(store, settings.plots_dir)
        t = stage("plots", t)
    print(f"figures written to {settings.plots_dir}/:")
    for p in paths:
        print(f"  {p.name}")
    print_table([{"stage": n, "seconds": s} for n, s in timings] +
                [{"stage": "total", "seconds": sum(s for _, s in timings)}],
                ["stage", "seconds"], title="demo timings")
    return 0


if __name__ == "__main__":
    run_main(main)
