"""The layering that `just lint` enforces (pyproject's import-linter contracts) really refuses
an import that runs the wrong way: a copy of the tree with one such import fails lint-imports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

VIOLATIONS = {
    "lib imports a domain": ("auth_service/lib/errors.py", "import auth_service.domain.users.service\n"),
    "a lower domain imports a higher one": (
        "auth_service/domain/sessions/service.py",
        "import auth_service.domain.auth.service\n",
    ),
    "the user store imports the admin API": (
        "auth_service/domain/users/service.py",
        "import auth_service.domain.admin.service\n",
    ),
    "the admin API imports the account's": (
        "auth_service/domain/admin/service.py",
        "import auth_service.domain.account.reads\n",
    ),
    "login imports the account's endpoints": (
        "auth_service/domain/auth/service.py",
        "import auth_service.domain.account.controllers\n",
    ),
    "the OAuth client store imports the admin API": (
        "auth_service/domain/oauth/clients.py",
        "import auth_service.domain.admin.service\n",
    ),
    "db imports the service": ("db/sql.py", "import auth_service.settings\n"),
    "the API imports the worker": ("auth_service/domain/notifications/jobs.py", "import tasks.worker\n"),
}


def _tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    for name in ("auth_service", "db", "tasks", "observability"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_as_it_is_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_an_import_the_wrong_way_fails_lint(tmp_path: Path, case: str) -> None:
    tree = _tree(tmp_path)
    path, line = VIOLATIONS[case]
    target = tree / path
    target.write_text(target.read_text() + "\n" + line)
    result = _lint(tree)
    assert result.returncode != 0, f"{case}: lint-imports passed\n{result.stdout}"
    assert "BROKEN" in result.stdout
