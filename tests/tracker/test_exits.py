"""Bad input and signals end in one clear line and the documented exit code, never a
traceback: 2 our errors, 3 the database, 130 Ctrl-C, 143 SIGTERM (the run INTERRUPTED
and no file left at the final path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracker.cli import app
from tracker.db.store import Store

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _one_line_error(res) -> str:
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


def test_deeply_nested_where_is_one_clear_error(env):
    res = runner.invoke(app, ["runs", "list", "--where", "(" * 400 + "subject=S1" + ")" * 400])
    assert res.exit_code == 2
    assert "nest deeper than 32" in _one_line_error(res)


@pytest.mark.parametrize("args", [["runs", "list", "--where", "subject=S\udcff1"],
                                  ["runs", "show", "fi-\udcff"]])
def test_invalid_utf8_arguments_are_one_clear_error(env, args):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert "is not valid UTF-8" in _one_line_error(res)


def test_a_wrong_password_says_so(mongo_uri):
    if "@" not in mongo_uri:
        pytest.skip("the test server has no authentication")
    prefix, _, rest = mongo_uri.partition("@")
    bad = prefix.rpartition(":")[0] + ":wrong-password@" + rest
    from pipeline.core.errors import DatabaseError

    with pytest.raises(DatabaseError, match="refused the login \\(authentication failed\\)") as err:
        Store(bad, "x", timeout_ms=3000).ping()
    assert "wrong-password" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_feature_extraction_interrupts_cleanly(sig, code, settings, tiny_vim1_dir, store):
    env = {**os.environ, "TRACKER_MONGO_URI": settings.mongo_uri, "TRACKER_DB_NAME": settings.db_name,
           "TRACKER_HOME": str(settings.home)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_features.py"), "--data-dir",
                             str(tiny_vim1_dir), "--batch-size", "4", "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    run = None
    while time.monotonic() < deadline and proc.poll() is None:
        run = store.db.feature_runs.find_one({"status": "RUNNING"})
        if run is not None:
            time.sleep(1.0)  # well inside the extraction (its signal handler is set)
            break
        time.sleep(0.05)
    assert run is not None, f"the extraction never reported progress: {proc.communicate()}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "interrupted" in err.lower()
    assert store.db.feature_runs.find_one({"_id": run["_id"]})["status"] == "INTERRUPTED"
    features = settings.feature_root
    assert not list(features.glob("*.h5")) and not list(features.glob(".*.tmp-*"))
