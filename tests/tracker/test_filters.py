"""`--where` filters: grammar, whitelist, rejection of MongoDB syntax, fuzzing, and the
filters' meaning checked against a real server."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.core.errors import ConfigError
from tests.tracker.seed_db import add_fit
from tracker.analysis.fields import WHERE_FIELDS as FIELDS
from tracker.analysis.filters import ALLOWED_OPERATORS, allowed_paths, parse_where
from tracker.cli import app

runner = CliRunner()


def test_examples_from_the_help():
    assert parse_where(["subject=S1"]) == {"subject": {"$eq": "S1"}}
    assert parse_where(["method in [ridge,pls]"]) == {"config.method": {"$in": ["ridge", "pls"]}}
    assert parse_where(["r>0.1"]) == {"summary.validation.r.median": {"$gt": 0.1}}
    assert parse_where(["subject=S1 or subject=S2"]) == {
        "$or": [{"subject": {"$eq": "S1"}}, {"subject": {"$eq": "S2"}}]}
    assert parse_where(["subject=S1", "val_median_r >= 0.2"]) == {"$and": [
        {"subject": {"$eq": "S1"}}, {"summary.validation.r.median": {"$gte": 0.2}}]}


def test_precedence_parentheses_quotes_and_types():
    assert parse_where(["roi=V4 and method=pls or roi=V1"]) == {"$or": [
        {"$and": [{"roi": {"$eq": "V4"}}, {"config.method": {"$eq": "pls"}}]}, {"roi": {"$eq": "V1"}}]}
    assert parse_where(["roi=V4 and (method=pls or layer='conv 3')"]) == {"$and": [
        {"roi": {"$eq": "V4"}},
        {"$or": [{"config.method": {"$eq": "pls"}}, {"features.layer": {"$eq": "conv 3"}}]}]}
    assert parse_where(["status != completed"]) == {"status": {"$ne": "COMPLETED"}}
    assert parse_where(["seed not in [0, 1]"]) == {"config.seed": {"$nin": [0, 1]}}
    assert parse_where(["test_mean_r2_corr<=-1.5e-2"]) == {"summary.test.r2_corr.mean": {"$lte": -0.015}}
    assert parse_where([], "fit") == {} and parse_where(["  "]) == {}
    assert parse_where(["layer=conv3"], "features") == {"config.layer": {"$eq": "conv3"}}


@pytest.mark.parametrize("text, message", [
    ("$where=1", "operators are not accepted"),
    ("subject=$where", "may not start with '\\$'"),
    ("subject in [S1, $function]", "may not start"),
    ("password=x", "unknown field 'password'"),
    ("subject ~ S1", "unexpected character '~'"),
    ("subject=S1 subject=S2", "join conditions"),
    ("r > high", "takes a number"),
    ("r > nan", "finite number"),
    ("(subject=S1", "ends too early"),
    ("subject=", "ends too early"),
    ("subject in S1", "expected '\\['"),
    ("= S1", "expected a field name"),
    ("subject=S1 or", "ends too early"),
    ("{'$where': 'sleep(1000)'}", "unexpected character"),
    ("config.method=ridge", "unknown field"),
])
def test_rejections_are_one_clear_config_error(text, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_where([text])
    assert str(err.value).startswith(f"--where {text!r}")


def _walk(node, paths, depth=0):
    """Assert that a parsed filter holds only whitelisted paths, operators and plain values."""
    assert depth < 200
    assert isinstance(node, dict) and len(node) == 1
    (key, value), = node.items()
    if key in ("$and", "$or"):
        assert isinstance(value, list) and len(value) >= 2
        for child in value:
            _walk(child, paths, depth + 1)
        return
    assert key in paths, key
    assert isinstance(value, dict) and len(value) == 1
    (op, operand), = value.items()
    assert op in ALLOWED_OPERATORS - {"$and", "$or"}
    values = operand if op in ("$in", "$nin") else [operand]
    assert isinstance(values, list) and values
    for v in values:
        assert type(v) in (str, int, float)
        assert not (isinstance(v, str) and v.startswith("$"))


ALPHABET = st.sampled_from(list("abcrs_$=!<>()[],.'\" 019-eE{}:;\\/*&|") +
                           ["subject", "method", "r", "or", "and", "not", "in", "$where", "$function",
                            "$gt", "function(){}", "val_median_r", "S1", "'", "this.r"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=14).map("".join), st.sampled_from(sorted(FIELDS)))
def test_fuzz_random_text_never_escapes_the_whitelist(text, kind):
    try:
        filt = parse_where([text], kind)
    except ConfigError:
        return
    if filt:
        _walk(filt, allowed_paths(kind))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_arbitrary_unicode(text):
    try:
        filt = parse_where([text])
    except ConfigError:
        return
    if filt:
        _walk(filt, allowed_paths("fit"))


def test_filters_select_the_right_runs_on_the_server(store, settings, monkeypatch):
    runs = {
        ("S1", "ridge"): add_fit(store, "S1", "ridge", [0.3] * 3, [0.3] * 3),
        ("S1", "pls"): add_fit(store, "S1", "pls", [0.05] * 3, [0.05] * 3),
        ("S2", "ridge"): add_fit(store, "S2", "ridge", [0.2] * 3, [0.2] * 3),
        ("S2", "pls"): add_fit(store, "S2", "pls", [0.4] * 3, [0.4] * 3, status="FAILED"),
    }

    def ids(*where):
        return {d["_id"] for d in store.find_runs("fit_runs", parse_where(list(where)), {"_id": 1})}

    def want(*keys):
        return {runs[k]["_id"] for k in keys}

    assert ids("subject=S1 or subject=S2") == want(*runs)
    assert ids("method in [ridge]", "r>0.1") == want(("S1", "ridge"), ("S2", "ridge"))
    assert ids("val_median_r>=0.2 and status=completed") == want(("S1", "ridge"), ("S2", "ridge"))
    assert ids("(subject=S2 and method=pls) or r<0.1") == want(("S1", "pls"), ("S2", "pls"))
    assert ids("subject not in [S1]", "method!=ridge") == want(("S2", "pls"))

    for key in ("TRACKER_MONGO_URI", "TRACKER_DB_NAME", "TRACKER_HOME"):
        monkeypatch.setenv(key, str({"TRACKER_MONGO_URI": settings.mongo_uri,
                                     "TRACKER_DB_NAME": settings.db_name,
                                     "TRACKER_HOME": settings.home}[key]))
    res = runner.invoke(app, ["runs", "list", "--json", "--where", "subject=S1 or subject=S2",
                              "--where", "r>0.1", "--status", "completed"])
    assert res.exit_code == 0, res.output
    import json

    assert {r["id"] for r in json.loads(res.output)} == want(("S1", "ridge"), ("S2", "ridge"))
    bad = runner.invoke(app, ["runs", "list", "--where", "$where=sleep(100)"])
    assert bad.exit_code == 2 and "operators are not" in bad.output
    assert "Traceback" not in bad.output
