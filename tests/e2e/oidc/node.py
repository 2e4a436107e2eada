"""Node.js and npm's openid-client for the relying-party script (js/rp.mjs).

The package is installed with `npm ci` from js/package-lock.json (exact versions, integrity
hashes) into a per-machine cache keyed by the lock file, so a run reinstalls nothing and a
changed lock installs afresh; never into the work tree. Node.js itself is a system tool like
nginx: missing, the test fails with one line saying what to install (it does not skip).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

__all__ = ["JS_DIR", "NODE_MAJOR", "openid_client_modules", "require_node", "run_relying_party"]

JS_DIR = Path(__file__).resolve().parent / "js"
NODE_MAJOR = 20  # openid-client 6 needs Web Crypto and fetch as globals


def require_node() -> tuple[str, str]:
    """The paths of `node` (20 or newer) and `npm`; else the test fails, in one line."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        pytest.fail(
            f"the OpenID Connect client tests need Node.js {NODE_MAJOR}+ and npm; {missing} not found "
            "(install them: apt-get install -y nodejs npm)",
            pytrace=False,
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < NODE_MAJOR:
        pytest.fail(f"the OpenID Connect client tests need Node.js {NODE_MAJOR}+, found {version}", pytrace=False)
    return node, npm


def _cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "auth-service-tests" / "npm"


def openid_client_modules(npm: str) -> Path:
    """The node_modules folder holding the locked openid-client, installed once per machine."""
    manifest, lock = (JS_DIR / "package.json").read_bytes(), (JS_DIR / "package-lock.json").read_bytes()
    version = json.loads(manifest)["dependencies"]["openid-client"]
    key = hashlib.sha256(manifest + b"\0" + lock).hexdigest()[:16]
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"openid-client-{version}-{key}"
    done = target / "node_modules" / "openid-client" / "package.json"
    # One installer at a time on this machine (xdist workers, parallel runs); the others wait.
    with (root / ".install.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if done.exists():
            return target / "node_modules"
        staging = root / f".{target.name}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy(JS_DIR / name, staging / name)
        installed = subprocess.run(
            [npm, "ci", "--prefix", str(staging), "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=staging,
        )
        if installed.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = (installed.stderr or installed.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.fail(f"npm ci of openid-client@{version} failed: {tail[0]}", pytrace=False)
        shutil.rmtree(target, ignore_errors=True)  # a half-made one from an interrupted run
        staging.rename(target)
    return target / "node_modules"


def run_relying_party(node: str, modules: Path, config: dict[str, Any], transcript: Path) -> dict[str, Any]:
    """Run js/rp.mjs with `config` (on stdin: no secret in argv); its transcript, also written to
    `transcript`. A failed step fails the test with the transcript so far."""
    finished = subprocess.run(
        [node, str(JS_DIR / "rp.mjs")],
        input=json.dumps({**config, "node_modules": str(modules)}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=JS_DIR,
    )
    transcript.write_text(finished.stdout + (f"\n--- stderr\n{finished.stderr}" if finished.stderr else ""))
    try:
        result: dict[str, Any] = json.loads(finished.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"rp.mjs exited {finished.returncode}: {finished.stderr[-2000:]}") from None
    failed = f"openid-client failed (transcript: {transcript}):\n{json.dumps(result, indent=2)[-4000:]}"
    assert finished.returncode == 0 and result.get("ok"), failed
    return result
