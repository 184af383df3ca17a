import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from tracker.analysis import fields, queries
from tracker.db.documents import summarize

from .seed_db import add_fit, feature_run

RNG = np.random.default_rng(3)


@pytest.fixture
def seeded(store):
    planted = {}
    warped = feature_run(warp="default")
    for subject in ("S1", "S2"):
        for method in ("ridge", "pls"):
            r_val = RNG.normal(0.3 if method == "ridge" else 0.2, 0.1, size=9)
            r_test = RNG.normal(0.1, 0.1, size=9)
            add_fit(store, subject, method, r_test, r_val)
            planted[(subject, method, "caffe")] = (r_test, r_val)
        # a second ridge run on retina-warped features, and a failed run that must not count
        r_w = RNG.normal(0.5, 0.1, size=9)
        add_fit(store, subject, "ridge", r_w, r_w, frun=warped)
        planted[(subject, "ridge", "caffe+retinawarp")] = (r_w, r_w)
        add_fit(store, subject, "ridge", np.ones(9), np.ones(9), status="FAILED")
    return planted


def test_compare_pools_voxels_of_completed_runs_only(store, seeded):
    rows = queries.compare(store, ["subject", "method", "preprocessing"], roi="V4", split="validation")
    assert len(rows) == 6
    for row in rows:
        expected = summarize(seeded[(row["subject"], row["method"], row["preprocessing"])][1])
        assert row["n"] == 9 and row["n_runs"] == 1
        # compare reads the float32 copies of the buckets (7 significant digits)
        assert row["mean"] == pytest.approx(expected["mean"], abs=1e-6)
        assert row["median"] == pytest.approx(expected["median"], abs=1e-6)
        planted = seeded[(row["subject"], row["method"], row["preprocessing"])][1]
        assert row["sem"] == pytest.approx(np.std(planted, ddof=1) / 3)
        assert row["chance_r2_corr"] == pytest.approx(1 / 119)


def test_compare_by_method_pools_subjects_and_counts_each_voxel_once(store, seeded):
    # raw and retina-warped ridge fits of the same voxels: refused unless named or averaged
    with pytest.raises(ConfigError, match=r"preprocessing \(caffe, caffe\+retinawarp\)"):
        queries.compare(store, ["method"], roi="V4", split="test", metric="r2_corr")
    rows = queries.compare(store, ["method"], roi="V4", split="test", metric="r2_corr",
                           over=["preprocessing"])
    ridge = next(r for r in rows if r["method"] == "ridge")
    per_voxel = np.concatenate([(seeded[(s, "ridge", "caffe")][0] ** 2
                                 + seeded[(s, "ridge", "caffe+retinawarp")][0] ** 2) / 2
                                for s in ("S1", "S2")])
    assert ridge["n"] == per_voxel.size == 18 and ridge["n_runs"] == 4
    assert ridge["mean"] == pytest.approx(per_voxel.mean())
    assert ridge["median"] == pytest.approx(np.median(per_voxel))
    assert ridge["pooling"] == "18/18 voxels: mean of up to 2 fits (preprocessing)"


def test_compare_rejects_unknown_fields(store):
    with pytest.raises(ConfigError, match="choose from"):
        fields.parse_by("subject,colour")
    with pytest.raises(ConfigError, match="--metric"):
        queries.compare(store, ["subject"], metric="accuracy")


def test_compare_other_roi_is_empty(store, seeded):
    assert queries.compare(store, ["subject"], roi="V1") == []


def test_list_runs(store, seeded):
    rows = queries.list_runs(store, "fit", status="failed")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"FAILED"}
    assert len(queries.list_runs(store, "fit", subject="S1")) == 4
    with pytest.raises(ConfigError):
        queries.list_runs(store, "bogus")
