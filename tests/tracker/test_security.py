import pytest

from tracker.db.security import redact_argv, redact_text, redact_uri


def test_redact_uri_hides_credentials():
    assert redact_uri("mongodb://alice:s3cret@db.example:27017/x") == "mongodb://***@db.example:27017/x"
    assert redact_uri("mongodb+srv://u:p%40ss@cluster0.abc.mongodb.net/?retryWrites=true") == (
        "mongodb+srv://***@cluster0.abc.mongodb.net/?retryWrites=true")
    assert redact_uri("mongodb://127.0.0.1:1234") == "mongodb://127.0.0.1:1234"


def test_redact_text_and_argv():
    assert "hunter2" not in redact_text("connect mongodb://bob:hunter2@h/ failed, password=hunter2")
    argv = ["run_fit.py", "--password", "hunter2", "--api-token=abc", "--uri",
            "mongodb://u:hunter2@h", "--subject", "S1"]
    out = redact_argv(argv)
    assert "hunter2" not in " ".join(out) and "abc" not in " ".join(out)
    assert out[-2:] == ["--subject", "S1"]


@pytest.mark.parametrize("password", ["p/ss", "p?ss", "p#ss", "p@ss", "a/b?c#d@e:f", "%2F%3F"])
def test_redaction_hides_passwords_with_any_characters(password):
    uri = f"mongodb://alice:{password}@db.example:27017/vimtrack?authSource=admin"
    assert redact_uri(uri) == "mongodb://***@db.example:27017/vimtrack?authSource=admin"
    text = redact_text(f"cannot reach {uri}: timed out")
    assert password not in text and "db.example:27017" in text
    assert password not in " ".join(redact_argv(["run_fit.py", "--uri", uri]))
