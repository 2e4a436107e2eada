"""HTTPS served by the API itself (`just api` with TLS_CERT_FILE / TLS_KEY_FILE): a real uvicorn
with a self-signed certificate made here, a login over TLS, HSTS over TLS only."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from auth_service.settings import Settings, SettingsError
from tests.conftest import PYTHON, TEST_SECRET, free_port
from tests.e2e.conftest import api_server, child_env, stop_process
from tests.factories import DEFAULT_PASSWORD, create_user
from tests.security.harness import hardened_settings

HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return hardened_settings(database_url, redis_url)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth-service test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return cert_file, key_file


@contextmanager
def tls_api(settings: Settings, workdir: Path, cert: Path, key: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    """The real API (`python -m auth_service api`) serving HTTPS; yields its URL and a context trusting it."""
    port = free_port()
    env = child_env(
        DATABASE_URL=settings.database.owner_url,
        REDIS_URL=settings.redis.url,
        JWT_SECRET_KEY=TEST_SECRET,
        RATE_LIMIT_PUBLIC="10000/minute",
        TLS_CERT_FILE=str(cert),
        TLS_KEY_FILE=str(key),
    )
    trust = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    with (workdir / f"api-tls-{port}.log").open("w") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "auth_service", "api", "--port", str(port)], cwd=workdir, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (workdir / f"api-tls-{port}.log").read_text()
                try:
                    if httpx.get(f"{base}/api/v1/health", verify=trust, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "TLS server did not become healthy"
                time.sleep(0.2)
            yield base, trust
        finally:
            stop_process(proc)


def test_login_over_https_gets_hsts_and_no_banner(settings: Settings, tmp_path: Path) -> None:
    asyncio.run(create_user(settings, username="alice"))
    cert, key = self_signed(tmp_path)
    with tls_api(settings, tmp_path, cert, key) as (base, trust):
        with httpx.Client(base_url=base, verify=trust) as client:
            login = client.post("/api/v1/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD})
            verify = client.get(
                "/api/v1/auth/verify", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
            )
            not_found = client.get("/nothing")
        # The certificate is what makes it work: a client that does not trust it is refused.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/api/v1/health", timeout=5)
        # And the port speaks TLS only.
        with pytest.raises(httpx.HTTPError):
            httpx.get(base.replace("https://", "http://") + "/api/v1/health", timeout=5)
    assert login.status_code == 200 and login.json()["token_type"] == "bearer"
    assert verify.status_code == 200 and verify.json()["username"] == "alice"
    for response in (login, verify, not_found):
        assert response.headers["strict-transport-security"] == HSTS
        assert "server" not in response.headers
        assert "uvicorn" not in str(response.headers.raw).lower()
        assert "litestar" not in str(response.headers.raw).lower()
    assert login.headers["cache-control"] == "no-store"


def test_plain_http_has_no_hsts_unless_a_trusted_proxy_terminated_tls(settings: Settings, tmp_path: Path) -> None:
    with api_server(settings, tmp_path, TRUSTED_PROXIES="127.0.0.1") as base:
        plain = httpx.get(f"{base}/api/v1/health")
        proxied = httpx.get(f"{base}/api/v1/health", headers={"X-Forwarded-Proto": "https"})
        downgraded = httpx.get(f"{base}/api/v1/health", headers={"X-Forwarded-Proto": "https, http"})
    assert plain.status_code == proxied.status_code == 200
    assert "strict-transport-security" not in plain.headers
    assert proxied.headers["strict-transport-security"] == HSTS
    assert "strict-transport-security" not in downgraded.headers  # our proxy's (right-most) word counts
    assert "server" not in plain.headers


def _start_up_error(tmp_path: Path, **env: str) -> str:
    full = child_env(DATABASE_URL="postgresql://unused@127.0.0.1:9/x", REDIS_URL="redis://127.0.0.1:9/0", **env)
    full["JWT_SECRET_KEY"] = TEST_SECRET
    done = subprocess.run(
        [PYTHON, "-m", "auth_service", "api", "--port", str(free_port())],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_tls_settings_are_checked_at_start_up_with_one_line(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    only_cert = _start_up_error(tmp_path, TLS_CERT_FILE=str(cert))
    only_key = _start_up_error(tmp_path, TLS_KEY_FILE=str(key))
    missing = _start_up_error(tmp_path, TLS_CERT_FILE=str(tmp_path / "nope.pem"), TLS_KEY_FILE=str(key))
    assert only_cert.startswith("error: TLS_KEY_FILE: set TLS_CERT_FILE and TLS_KEY_FILE together")
    assert only_key.startswith("error: TLS_CERT_FILE: set TLS_CERT_FILE and TLS_KEY_FILE together")
    assert missing.startswith(f"error: TLS_CERT_FILE: {tmp_path / 'nope.pem'} is not a readable file")


def test_tls_settings_both_or_neither(database_url: str, redis_url: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    both = hardened_settings(database_url, redis_url, tls_cert_file=str(cert), tls_key_file=str(key))
    assert (both.app.tls_cert_file, both.app.tls_key_file) == (str(cert), str(key))
    with pytest.raises(SettingsError, match=r"^TLS_KEY_FILE: "):
        hardened_settings(database_url, redis_url, tls_cert_file=str(cert))
    with pytest.raises(SettingsError, match=r"^TLS_KEY_FILE: .* is not a readable file"):
        hardened_settings(database_url, redis_url, tls_cert_file=str(cert), tls_key_file=str(tmp_path))
