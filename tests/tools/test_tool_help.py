"""--help of plot_curves.py and degradation.py: example commands intact, every option explained."""

from __future__ import annotations

import argparse
import os
import runpy
import sys

import pytest

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")


@pytest.mark.parametrize("tool", ["plot_curves.py", "degradation.py"])
def test_help_keeps_examples_and_explains_every_option(tool, monkeypatch, capsys):
    parsers = []
    real = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        parsers.append(self)
        return real(self, ["--help"])

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(sys, "argv", [tool])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(os.path.join(TOOLS, tool), run_name="__main__")
    assert e.value.code == 0
    text = capsys.readouterr().out
    # the example's continued line stays two lines, as typed in a shell
    example = [ln for ln in text.splitlines() if ln.strip().startswith("python tools/")]
    assert example and all(len(ln) <= 100 for ln in example)
    assert any(ln.endswith(" \\") for ln in example)
    undocumented = [a.dest for a in parsers[0]._actions if not a.help]
    assert undocumented == []
