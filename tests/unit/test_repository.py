"""What a fresh clone promises before anything runs: the README stands alone, the Python range
is one the locked embedded servers have wheels for, and CI leaves set-up to the recipes."""

from __future__ import annotations

import re
import tomllib

from packaging.specifiers import SpecifierSet

from tests.conftest import ROOT


def test_the_readme_stands_alone() -> None:
    """No link or path that leaves the repository (a clone has no ../shared)."""
    text = (ROOT / "README.md").read_text()
    outside = re.findall(r"\.\./[\w./-]+", text)
    assert not outside, f"README points outside the repository: {outside}"


def test_every_allowed_python_has_a_locked_pgserver_wheel() -> None:
    """pgserver (the embedded PostgreSQL) ships wheels only, for a few CPython versions: the
    project may not claim a version that `uv sync` could not install it on."""
    allowed = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (pgserver,) = [package for package in lock["package"] if package["name"] == "pgserver"]
    assert "sdist" not in pgserver  # if it ever ships one, this test's premise is gone
    tags = {m for wheel in pgserver["wheels"] for m in re.findall(r"-(cp3\d+|py3)-", wheel["url"])}
    if "py3" in tags:
        return
    with_wheels = {f"3.{tag[3:]}" for tag in tags}
    claimed = {f"3.{minor}" for minor in range(8, 20) if f"3.{minor}.0" in allowed}
    assert claimed, allowed
    assert claimed <= with_wheels, f"requires-python {allowed} allows {sorted(claimed - with_wheels)}: no wheel"


def test_ci_leaves_the_debian_packages_to_the_test_recipe() -> None:
    """`just test` installs what its tests need (test-deps); CI runs exactly that command."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install" not in ci and re.search(r"^just test$", ci, re.MULTILINE)
    justfile = (ROOT / "justfile").read_text()
    assert re.search(r"^test \*ARGS: lint test-deps$", justfile, re.MULTILINE)
    assert "nginx" in justfile and "victoria-metrics" in justfile
