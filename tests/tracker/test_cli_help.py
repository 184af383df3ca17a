"""#18: help text keeps its literal square brackets under rich markup (``[ridge,pls]``,
``[sweep]``), for every command and option; and ``tracker --version``."""

import re

import pytest
import typer
import typer.rich_utils
from rich.style import Style
from rich.text import Text
from typer.testing import CliRunner

from tracker.cli import app

runner = CliRunner()
_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")


def _commands(group, path=()):
    yield path, group
    if hasattr(group, "commands"):  # a group (typer vendors its own click)
        for name, sub in group.commands.items():
            yield from _commands(sub, (*path, name))


def _style_tag(tag: str) -> bool:
    if tag.startswith("/"):
        return tag == "/" or _style_tag(tag[1:])
    try:
        Style.parse(tag)
    except Exception:
        return False
    return True


def intended(raw: str) -> str:
    """What the author meant readers to see: style tags dropped, every other bracket kept."""
    def repl(m: re.Match) -> str:
        slashes, tag = m.group(1), m.group(2)
        if len(slashes) % 2:  # escaped: a literal bracket
            return slashes[:-1] + f"[{tag}]"
        return slashes if _style_tag(tag) else m.group(0)
    return _TAG.sub(repl, raw)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _help_texts():
    root = typer.main.get_command(app)
    for path, cmd in _commands(root):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        yield path, [t for t in texts if t.strip()]


def test_intended_keeps_literal_brackets_and_drops_styles():
    assert intended("a [bold]b[/bold] 'method in [ridge,pls]'") == "a b 'method in [ridge,pls]'"
    assert intended(r"under \[sweep] in") == "under [sweep] in"


@pytest.mark.parametrize("path,texts", list(_help_texts()), ids=lambda v: " ".join(v) if
                         isinstance(v, tuple) else "")
def test_every_help_shows_its_bracketed_words(path, texts, monkeypatch):
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 4000)
    res = runner.invoke(app, [*path, "--help"], terminal_width=4000)
    assert res.exit_code == 0, res.output
    shown = _norm(res.output)
    for raw in texts:
        want = intended(raw)
        plain = Text.from_markup(raw).plain
        assert plain == want, f"{' '.join(path)}: rich markup eats {raw!r} -> {plain!r}"
        first = _norm(want.split("\n\n")[0])[:120]  # the first paragraph (typer rewraps the rest)
        assert first in shown, f"{' '.join(path)}: {first!r} not in the rendered help"


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and re.fullmatch(r"tracker \(vimtrack\) \d+\.\d+\.\d+\S*\n", res.output)
