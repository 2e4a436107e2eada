"""The API document is good enough for a generated client: openapi-python-client builds one from
it without a single warning, and the client it builds imports and knows every operation."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from auth_service.app import create_app
from tests.conftest import make_settings


def test_openapi_python_client_builds_a_client_without_warnings(tmp_path: Path) -> None:
    settings = make_settings("postgresql://unused@127.0.0.1:9/unused", "redis://127.0.0.1:9/0")
    document = create_app(settings).openapi_schema.to_schema()
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    bin_dir = Path(sys.executable).parent
    generator = shutil.which("openapi-python-client", path=str(bin_dir))
    assert generator, "openapi-python-client is a dev dependency (uv.lock)"
    result = subprocess.run(
        [generator, "generate", "--path", "openapi.json", "--meta", "none"],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},  # its ruff post-hook
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output and "Skipping" not in output, output
    sys.path.insert(0, str(tmp_path))
    try:
        client = importlib.import_module("auth_service_client")
        operations = {
            path.stem
            for folder in (Path(client.__file__).parent / "api").iterdir()
            if folder.is_dir()
            for path in folder.glob("*.py")
            if path.stem != "__init__"
        }
        expected = sum(
            len([m for m in item if m in {"get", "post", "patch", "delete", "put"}])
            for item in document["paths"].values()
        )
        assert len(operations) == expected, sorted(operations)
        assert hasattr(client, "AuthenticatedClient")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("auth_service_client")]:
            del sys.modules[name]
