"""#18: `runs show` as a summary, `runs delete` confirmation, `--csv` listings, gc across
databases from the CLI, where the data lives (db status, a new home, a started server),
plain progress lines off a terminal, the demo's quiet start and last lines, run_fit's
input checks."""

import csv
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipeline.core.errors import ConfigError, DataFormatError
from tracker.cli import app
from tracker.cli.progress import ProgressBars
from tracker.db.store import Store

from .seed_db import add_fit
from .test_maintenance import add_feature_run

runner = CliRunner()
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def ok(*args, **kw):
    res = runner.invoke(app, list(args), **kw)
    assert res.exit_code == 0, res.output
    return res


def test_runs_show_is_a_summary_and_json_the_whole_document(env, store):
    fit = add_fit(store, "S1", "ridge", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    text = ok("runs", "show", fit["_id"][:7]).stdout
    assert fit["_id"] in text and "config" in text and "provenance" in text
    sha = fit["splits"][0]["test_indices_sha256"]
    assert f"sha256 {sha[:16]}" in text and "250 test images" in text  # sizes and hashes
    assert "test_indices" not in text  # never the indices themselves
    assert len(text.splitlines()) < 80
    doc = json.loads(ok("runs", "show", fit["_id"], "--json").stdout)
    assert doc["splits"][0]["test_indices"] == [0, 1, 2]


def test_runs_delete_asks_and_prints_the_full_id(env, store):
    fit = add_fit(store, "S1", "ridge", [0.1] * 3, [0.2] * 3)
    res = runner.invoke(app, ["runs", "delete", fit["_id"][:6]], input="n\n")
    assert res.exit_code == 1 and fit["_id"] in res.output and "nothing deleted" in res.output
    assert store.get_run(fit["_id"])[1]["_id"] == fit["_id"]
    res = runner.invoke(app, ["runs", "delete", fit["_id"][:6], "--yes"])
    assert res.exit_code == 2 and "needs the full run id" in res.stderr
    assert store.get_run(fit["_id"])
    res = runner.invoke(app, ["runs", "delete", fit["_id"][:6]], input="y\n")
    assert res.exit_code == 0 and f"deleted fit_runs run {fit['_id']}" in res.stdout
    with pytest.raises(ConfigError, match="no run with id"):
        store.get_run(fit["_id"])
    other = add_fit(store, "S2", "pls", [0.1] * 3, [0.2] * 3)
    ok("runs", "delete", other["_id"], "--yes")
    with pytest.raises(ConfigError):
        store.get_run(other["_id"])


def test_listings_have_csv(env, store):
    fits = [add_fit(store, s, "ridge", [0.1] * 3, [0.2] * 3) for s in ("S1", "S2")]
    rows = list(csv.DictReader(io.StringIO(ok("runs", "list", "--csv").stdout)))
    assert sorted(r["id"] for r in rows) == sorted(f["_id"] for f in fits)
    assert {r["subject"] for r in rows} == {"S1", "S2"}
    fields = list(csv.DictReader(io.StringIO(ok("runs", "fields", "--csv").stdout)))
    assert {"field": "subject", "path": "subject", "type": "text"} in fields


def test_gc_keeps_a_file_that_a_run_of_another_database_names(env, store, settings, mongo_uri):
    other = Store(mongo_uri, store.db_name + "_x")
    other.init_schema()
    try:
        theirs = Path(add_feature_run(other, settings, "ab12cd34ef56_fe-theirs000001.h5")["output"]["path"])
        orphan = settings.feature_root / "orphan.h5"
        orphan.write_bytes(b"x")
        listed = json.loads(ok("gc", "--json").stdout)
        assert listed["orphan_files"] == [str(orphan)]
        ok("gc", "--delete")
        assert theirs.exists() and not orphan.exists()
    finally:
        other.client.drop_database(store.db_name + "_x")
        other.close()


def test_db_status_and_empty_answers_name_the_database_home(env, settings):
    status = json.loads(ok("db", "status", "--json").stdout)
    assert status["home"] == str(settings.home.resolve()) and settings.db_name in status["location"]
    assert settings.db_name in ok("db", "status").stdout


def test_a_new_home_and_a_started_server_are_announced(tmp_path, monkeypatch):
    home = tmp_path / "elsewhere"
    for var in ("TRACKER_MONGO_URI", "TRACKER_DB_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRACKER_HOME", str(home))
    try:
        first = runner.invoke(app, ["runs", "list", "--json"])
        assert first.exit_code == 0 and first.stdout == "[]\n"  # an empty database: right answer
        said = f"no fit runs yet in database vimtrack of the embedded server in {home.resolve()}"
        assert said in first.stderr
        assert f"no tracker database in {home.resolve()}" in first.stderr
        assert "started the embedded database server" in first.stderr
        assert "tracker db stop" in first.stderr and str(home / "db") in first.stderr
        second = runner.invoke(app, ["runs", "list", "--subject", "S1"])
        assert second.exit_code == 1 and "subject=S1" in second.stderr
        assert "started the embedded" not in second.stderr and "no tracker database" not in second.stderr
        assert str((home / "db").resolve()) in second.stderr
    finally:
        ok("db", "stop")


def test_plain_progress_lines_for_a_log_file():
    out = io.StringIO()
    bars = ProgressBars(console=Console(file=out, width=200))
    assert bars.plain  # a StringIO is no terminal
    with bars:
        for t, done in ((0.0, 10), (3.0, 20), (10.5, 50), (12.0, 100)):
            bars._line("train", done, 100, now=t)
        for t, done in ((20.0, 5), (21.0, 100)):  # the same stage again: a new series
            bars._line("train", done, 100, now=t)
        for t in (30.0, 45.0):  # a sub-stage that reports 0 once per fit, fits 15 s apart
            bars._line("fit:test", 0, 4, now=t)
        bars._line("done", 4, 4, now=46.0)  # a stage that finishes as it starts: no line
    assert out.getvalue().splitlines() == [
        "train: 50/100 (50%), about 13 s left",  # first line after 10 s; 40 in 10.5 s -> 50 in 13 s
        "train: 100/100 done (12 s)",
        "train: 100/100 done (1 s)",
    ]


def _script(name):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(f"_t_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_fit_resolves_names_and_refuses_bad_inputs(env, store, tmp_path, capsys):
    run_fit = _script("run_fit")
    args = run_fit.parse_args(["--roi", "v4", "--subject", "s1", "--method", "RIDGE"])
    assert (args.roi, args.subject, args.method) == ("V4", "S1", "ridge")
    with pytest.raises(SystemExit):
        run_fit.parse_args(["--roi", "V9"])
    assert "choose from V1" in capsys.readouterr().err
    fit = add_fit(store, "S1", "ridge", [0.1] * 3, [0.2] * 3)
    with pytest.raises(ConfigError, match="is a fit run"):
        run_fit.main(["--features", fit["_id"], "--subject", "S1", "--method", "ridge", "--quiet"])
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "EstimatedResponses.mat").write_bytes(b"not a mat file")
    for bad, why in ((tmp_path / "missing", "no such directory"), (empty, "holds no EstimatedResponses"),
                     (corrupt, "not a MATLAB")):
        with pytest.raises(DataFormatError, match=why):
            run_fit.main(["--data-dir", str(bad), "--subject", "S1", "--method", "ridge", "--quiet"])


def test_demo_quiet_start_and_next_steps(tmp_path):
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(SCRIPTS)!r})\n"
        "from _common import quiet_backends\n"
        "quiet_backends()\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are '\n"
        "         b'written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1796299654.258912   10751 cudart_stub.cc:31] Could not find cuda\\n')\n"
        "os.write(2, b'E0000 00:00:1.2 7 real.cc:3] a real error\\n')\n"
        "print('python stderr', file=sys.stderr)\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
        "import time; time.sleep(0.3)\n")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "3\n"
    assert "InitializeLog" not in proc.stderr and "cudart_stub" not in proc.stderr
    assert "a real error" in proc.stderr and "python stderr" in proc.stderr
    demo = _script("demo")
    from tracker.db.settings import Settings

    text = demo.next_steps(Settings(home=tmp_path), "database vimtrack of the embedded server")
    assert "tracker db stop" in text and "tracker compare" in text and "tracker report" in text
