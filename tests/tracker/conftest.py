"""Database fixtures: every test talks to a real wire-protocol server.

By default a session-wide embedded SecantusDB server is started on a temporary
directory (and stopped at the end). Set TRACKER_MONGO_URI to run the same tests
against any MongoDB server instead. Each test gets its own database, dropped after.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tracker.db.server import EmbeddedServer
from tracker.db.settings import Settings
from tracker.db.store import Store


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    uri = os.environ.get("TRACKER_MONGO_URI")
    if uri:
        yield uri
        return
    server = EmbeddedServer(tmp_path_factory.mktemp("embedded") / "db")
    info = server.ensure()
    yield info.uri
    server.stop()


@pytest.fixture
def db_name():
    return "test_" + uuid.uuid4().hex[:10]


@pytest.fixture
def store(mongo_uri, db_name):
    s = Store(mongo_uri, db_name)
    s.init_schema()
    yield s
    s.client.drop_database(db_name)
    s.close()


@pytest.fixture
def settings(mongo_uri, db_name, tmp_path):
    return Settings(mongo_uri=mongo_uri, db_name=db_name, home=tmp_path / "home",
                    data_dir=tmp_path / "no_data")


@pytest.fixture
def env(settings, monkeypatch):
    """The CLI's environment pointed at this test's database (for CliRunner tests)."""
    monkeypatch.setenv("TRACKER_MONGO_URI", settings.mongo_uri)
    monkeypatch.setenv("TRACKER_DB_NAME", settings.db_name)
    monkeypatch.setenv("TRACKER_HOME", str(settings.home))
    return settings
