"""The justfile hands recipe arguments to commands as positional arguments ("$@", "$1"), so
the shell never re-splits or runs them (issue: `just create-user 'eve$(touch /tmp/x)'`)."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_no_recipe_interpolates_a_parameter_unquoted() -> None:
    text = (ROOT / "justfile").read_text()
    assert re.search(r"^set positional-arguments := true$", text, re.MULTILINE)
    parameters: set[str] = set()
    for header in re.findall(r"^([a-z][\w-]*)((?: [^:\n]+)?):", text, re.MULTILINE):
        parameters |= {p.lstrip("*+").split("=")[0] for p in header[1].split()}
    used = set(re.findall(r"\{\{\s*([A-Z_]+)\s*\}\}", text))
    assert not (used & parameters), f"recipe parameters interpolated by just, not quoted: {used & parameters}"
