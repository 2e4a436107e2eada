"""Start-up refuses weak signing material (ASVS 5.0 V13.3, V9.1): an empty, short (< 32 bytes)
or published example JWT secret, and for asymmetric algorithms a key file that is missing,
unreadable, of the wrong type, too small or not the pair of its public key.

Both through load_settings() and through a real `python -m auth_service api` start: a
non-zero exit with one line naming the variable, no traceback, and never the secret itself.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth_service.settings import MIN_SECRET_BYTES, WELL_KNOWN_SECRETS, SettingsError, load_settings
from tests.conftest import PYTHON, free_port
from tests.e2e.conftest import child_env
from tests.security.forge import new_keypair

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", "REDIS_URL": "redis://127.0.0.1:1/0"}
# Unreachable servers: a start that got past the settings would fail differently (and later).
UNREACHABLE = {"DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1/0"}

WEAK_SECRETS = {
    "empty": "",
    "blank": "   ",
    "one-byte-short": "s" * (MIN_SECRET_BYTES - 1),
    "short-multibyte": "\u00e9" * 15,  # 15 characters, 30 bytes
    "short": "hunter2",
    **{f"well-known-{i}": value for i, value in enumerate(sorted(WELL_KNOWN_SECRETS))},
    "well-known-uppercase": "CHANGEME",
    "well-known-padded": "  your-256-bit-secret  ",
    "jwt-io-default": "a-string-secret-at-least-256-bits-long",
    "fastapi-docs": "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
}


def _refusal(env: dict[str, str], env_file: Path | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(env={**BASE, **env}, env_file=env_file)
    return str(info.value)


@pytest.mark.parametrize("secret", WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_weak_secret_is_refused_by_load_settings(secret: str) -> None:
    message = _refusal({"JWT_SECRET_KEY": secret})
    assert message.startswith("JWT_SECRET_KEY: ")
    assert "\n" not in message
    if secret.strip():
        assert secret.strip() not in message


def test_weak_secret_in_env_file_is_refused_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("JWT_SECRET_KEY=your-256-bit-secret\n")
    assert _refusal({}, env_file).startswith("JWT_SECRET_KEY: ")


@pytest.mark.parametrize(
    "secret",
    [secrets.token_hex(32), secrets.token_urlsafe(32), "\u00e9" * 16, "x" * MIN_SECRET_BYTES],
    ids=["hex-64", "urlsafe-43", "multibyte-32-bytes", "exactly-32-bytes"],
)
def test_strong_enough_secret_is_accepted(secret: str) -> None:
    assert load_settings(env={**BASE, "JWT_SECRET_KEY": secret}, env_file=None).tokens.secret == secret


# ---- asymmetric keys ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    rsa_pair, ec_pair, other_ec = (new_keypair(k, folder, n) for k, n in (("RSA", "rsa"), ("EC", "ec"), ("EC", "ec2")))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    (folder / "small.pem").write_bytes(
        small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    unreadable = folder / "unreadable.pem"
    unreadable.mkdir()  # a directory: exists, but not a readable key file (root ignores chmod)
    return {
        "rsa": rsa_pair.private_file,
        "rsa.pub": rsa_pair.public_file,
        "ec": ec_pair.private_file,
        "ec.pub": ec_pair.public_file,
        "other-ec.pub": other_ec.public_file,
        "small": folder / "small.pem",
        "garbage": folder / "garbage.pem",
        "unreadable": unreadable,
        "missing": folder / "missing.pem",
    }


BAD_KEYS = {
    "no-key-file": ("RS384", None, None, "JWT_PRIVATE_KEY_FILE"),  # RS256 without a file: the managed key
    "missing-file": ("RS256", "missing", None, "JWT_PRIVATE_KEY_FILE"),
    "directory": ("RS256", "unreadable", None, "JWT_PRIVATE_KEY_FILE"),
    "garbage": ("ES256", "garbage", None, "JWT_PRIVATE_KEY_FILE"),
    "ec-key-for-RS256": ("RS256", "ec", None, "JWT_PRIVATE_KEY_FILE"),
    "rsa-key-for-EdDSA": ("EdDSA", "rsa", None, "JWT_PRIVATE_KEY_FILE"),
    "P-256-for-ES384": ("ES384", "ec", None, "JWT_PRIVATE_KEY_FILE"),
    "public-key-as-private": ("RS256", "rsa.pub", None, "JWT_PRIVATE_KEY_FILE"),
    "rsa-1024": ("RS256", "small", None, "JWT_PRIVATE_KEY_FILE"),
    "public-of-another-key": ("ES256", "ec", "other-ec.pub", "JWT_PUBLIC_KEY_FILE"),
    "public-file-missing": ("ES256", "ec", "missing", "JWT_PUBLIC_KEY_FILE"),
    "public-file-garbage": ("ES256", "ec", "garbage", "JWT_PUBLIC_KEY_FILE"),
}


@pytest.mark.parametrize(("alg", "private", "public", "variable"), BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_unusable_key_file_is_refused_by_load_settings(
    keys: dict[str, Path], alg: str, private: str | None, public: str | None, variable: str
) -> None:
    env = {"JWT_ALGORITHM": alg, "JWT_SECRET_KEY": ""}
    env["JWT_PRIVATE_KEY_FILE"] = str(keys[private]) if private else ""
    env["JWT_PUBLIC_KEY_FILE"] = str(keys[public]) if public else ""
    message = _refusal(env)
    assert message.startswith(f"{variable}: ") and "\n" not in message
    assert "PRIVATE KEY" not in message and "not a key" not in message


def test_matching_key_files_are_accepted(keys: dict[str, Path]) -> None:
    for alg, private, public in (("RS256", "rsa", "rsa.pub"), ("PS256", "rsa", ""), ("ES256", "ec", "ec.pub")):
        env = {"JWT_ALGORITHM": alg, "JWT_PRIVATE_KEY_FILE": str(keys[private])}
        env["JWT_PUBLIC_KEY_FILE"] = str(keys[public]) if public else ""
        assert load_settings(env={**BASE, **env}, env_file=None).tokens.algorithm == alg


# ---- a real process start ----------------------------------------------------------------------


def test_api_process_refuses_to_start_with_weak_signing_material(keys: dict[str, Path], tmp_path: Path) -> None:
    starts = {
        "empty": ({"JWT_SECRET_KEY": ""}, ""),
        "well-known-long": (
            {"JWT_SECRET_KEY": "a-string-secret-at-least-256-bits-long"},
            "a-string-secret-at-least-256-bits-long",
        ),
        "wrong-key-type": ({"JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY_FILE": str(keys["ec"])}, ""),
    }
    procs = {
        name: subprocess.Popen(
            [PYTHON, "-m", "auth_service", "api", "--port", str(free_port())],
            cwd=tmp_path,  # no .env here
            env=child_env(**UNREACHABLE, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (env, _) in starts.items()
    }
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        secret = starts[name][1]
        variable = "JWT_SECRET_KEY" if "key-" not in name else "JWT_PRIVATE_KEY_FILE"
        assert proc.returncode not in (0, None), (name, stdout, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, (name, stderr)
        assert lines[0].startswith(f"error: {variable}: "), (name, lines)
        assert "Traceback" not in stdout + stderr, name
        assert "Started server process" not in stdout + stderr, name  # refused before uvicorn, not at startup
        if secret:
            assert secret not in stdout + stderr, name
