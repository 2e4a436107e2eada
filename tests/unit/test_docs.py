"""The README is the entry and the docs site is the rest: the README stays short and its links
land on pages that exist, the site builds strictly, stands alone (nothing it loads or links to
lives outside the repository) and lists every setting the service reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README_MAX_LINES = 250
# Hosts a page may name in its text: this machine, the compose services, documentation examples.
LOCAL_HOSTS = {"127.0.0.1", "localhost", "HOST", "otel-collector", "www.w3.org"}


def test_the_readme_is_at_most_250_lines() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move a section to docs/"


def test_the_readme_keeps_the_entry_sections() -> None:
    text = (ROOT / "README.md").read_text()
    for heading in ("## Quick start", "## A round trip with curl", "## Where to go next"):
        assert re.search(rf"^{re.escape(heading)}$", text, re.MULTILINE), heading
    assert "pip install rust-just uv" in text and "just up" in text and "just test" in text


def test_every_docs_page_the_readme_links_exists_and_is_in_the_site() -> None:
    text = (ROOT / "README.md").read_text()
    linked = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert linked, "the README points at no docs page"
    nav = (ROOT / "mkdocs.yml").read_text()
    for path in linked:
        assert (ROOT / path).is_file(), f"README links {path}, which does not exist"
        assert f": {path.removeprefix('docs/')}" in nav, f"{path} is not in mkdocs.yml's nav"


def test_no_docs_page_points_outside_the_repository() -> None:
    for page in (ROOT / "docs").rglob("*.md"):
        text = page.read_text()
        assert not re.findall(r"\.\./[\w./-]+", text), f"{page.name} points outside the repository"
        links = re.findall(r"\]\((https?://[^)]+)\)", text)
        assert not links, f"{page.name} links out of the repository: {links}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as `just test` builds it (strict: a warning fails)."""
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return out


def test_the_built_site_loads_and_links_nothing_outside(site: Path) -> None:
    """No web font, no CDN script, no link out: every page and stylesheet works offline."""
    for file in [*site.rglob("*.html"), *site.rglob("*.css")]:
        text = file.read_text(errors="replace")
        loaded = re.findall(r"""(?:href|src)=["'](?:https?:)?//[^"']+""", text) + re.findall(
            r"url\(\s*['\"]?(?:https?:)?//[^)]+\)", text
        )
        assert not loaded, f"{file.relative_to(site)} loads or links {loaded[:3]}"
        if file.suffix == ".css":  # its licence comments name their projects; only url() loads
            continue
        hosts = {m for m in re.findall(r"https?://([\w.-]+)", text)}
        foreign = {h for h in hosts if h not in LOCAL_HOSTS and not h.endswith(("example.com", "example.org"))}
        assert not foreign, f"{file.relative_to(site)} names hosts outside: {sorted(foreign)}"


def test_the_configuration_page_lists_every_declared_setting(site: Path) -> None:
    from auth_service.settings import describe

    page = (site / "configuration.html").read_text()
    missing = [row.variable for row in describe() if f"<code>{row.variable}</code>" not in page]
    assert not missing, f"not in the configuration reference: {missing}"


def test_the_endpoint_page_lists_every_operation_of_the_openapi_document(site: Path) -> None:
    from docs.gen.reference import openapi_document

    page = (site / "endpoints.html").read_text()
    for path, operations in openapi_document()["paths"].items():
        for method in operations:
            assert f"{method.upper()} <code>{path}</code>" in page, f"{method.upper()} {path} is not in the reference"


def test_just_test_builds_the_docs_strictly_before_pytest_and_just_docs_serves_them() -> None:
    justfile = (ROOT / "justfile").read_text()
    recipe = justfile.split("\ntest *ARGS: lint test-deps\n", 1)[1].split("\n\n", 1)[0]
    build, pytest_line = recipe.splitlines()
    assert "mkdocs build --strict" in build and "-m pytest" in pytest_line
    assert re.search(r"^docs: sync\n    .*mkdocs serve", justfile, re.MULTILINE)
    assert "site/" in (ROOT / ".gitignore").read_text().splitlines()
