"""What a new user hits in their first hour: the README's own curl block and the docs' runnable
ones, taken ports, settings and servers that are wrong, the CLI's refusals, and Ctrl-C. Every
refusal is one line that names the setting or argument; none is a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth_service.settings import Settings
from tests.conftest import PYTHON, ROOT, TEST_SECRET, free_port
from tests.e2e.conftest import api_server, child_env, run_cli, wait_healthy
from tests.factories import create_user

_cli = run_cli


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url, JWT_SECRET_KEY=TEST_SECRET)


# ------------------------------------------------------------------------------ the README and the docs

RUNNABLE = "<!-- runnable -->"
_FIXED = {"code", "status", "token_type", "username", "roles", "email", "action"}  # values that do not vary


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A round trip with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


def _runnable_blocks() -> list[tuple[str, str]]:
    """The README's round trip, and every docs block marked runnable (the line before its fence)."""
    blocks = [("README.md", _readme_block())]
    for page in sorted((ROOT / "docs").glob("*.md")):
        for number, part in enumerate(page.read_text().split(RUNNABLE + "\n```sh\n")[1:], start=1):
            blocks.append((f"docs/{page.name}#{number}", part.split("\n```", 1)[0]))
    return blocks


def _same_shape(expected: Any, actual: Any, where: str = "$") -> None:
    """Keys everywhere, and the values that do not vary (booleans, codes, names, statuses)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{where}: {actual} vs {expected}"
        for key, value in expected.items():
            if key in _FIXED:
                assert actual[key] == value, f"{where}.{key}: {actual[key]!r}, the docs say {value!r}"
            elif isinstance(value, (dict, bool, list)):
                _same_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):  # the items shown: the first ones of the answer
        assert isinstance(actual, list) and len(actual) >= len(expected), f"{where}: {actual} vs {expected}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
            _same_shape(want, got, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r}, the docs say {expected!r}"


def test_the_round_trip_in_the_docs_is_the_readmes() -> None:
    """The site's getting-started page shows the same block the README runs."""
    assert "```sh\n" + _readme_block() + "\n```" in (ROOT / "docs" / "getting-started.md").read_text()


@pytest.mark.parametrize(("source", "block"), [pytest.param(*block, id=block[0]) for block in _runnable_blocks()])
async def test_the_docs_command_blocks_run_as_written(
    source: str, block: str, settings: Settings, tmp_path: Path
) -> None:
    """Docs and service cannot drift: each runnable block (the README's round trip, the marked
    blocks of docs/) runs in bash against a live server, and every answer matches the comment
    under its command (status, or the JSON's shape)."""
    await create_user(settings, username="admin", password="the printed password", roles=["admin"])
    assert "PASSWORD='<the printed password>'" in block and "B=http://127.0.0.1:8000/api/v1" in block, source
    expected: list[str] = []
    script: list[str] = ["set -euo pipefail"]
    for line in block.splitlines():
        if re.match(r"# (\{|\[|\d{3}\b)", line):
            expected.append(line[2:])
            script.append(f"printf '\\n@@ {len(expected)}\\n'")  # curl's bodies end without a newline
        else:
            script.append(line)
    assert len(expected) >= (8 if source == "README.md" else 1), expected
    with api_server(settings, tmp_path, RATE_LIMIT_LOGIN="100/minute") as base:
        text = "\n".join(script).replace("http://127.0.0.1:8000", base)
        text = text.replace("<the printed password>", "the printed password")
        bash = shutil.which("bash") or "/bin/bash"
        ran = subprocess.run([bash, "-c", text], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    answers = re.split(r"^@@ \d+\n", ran.stdout, flags=re.MULTILINE)
    assert len(answers) == len(expected) + 1, ran.stdout
    for number, (want, got) in enumerate(zip(expected, answers, strict=False), start=1):
        lines = got.strip().splitlines()
        assert lines, f"{source}, answer {number}: nothing printed, the docs say {want}"
        last = lines[-1]
        if want[0] in "{[":
            _same_shape(json.loads(want), json.loads(last), f"{source}, answer {number}")
        else:
            assert last == want[:3], f"{source}, answer {number}: status {last}, the docs say {want}"


async def test_logout_documents_its_body_as_optional(settings: Settings, tmp_path: Path) -> None:
    with api_server(settings, tmp_path) as base:
        doc = httpx.get(f"{base}/docs/openapi.json").json()
    assert doc["paths"]["/api/v1/auth/logout"]["post"]["requestBody"]["required"] is False
    assert doc["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["required"] is True


# ------------------------------------------------------------------------------ ports


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("api", "PORT"),
        ("up", "PORT"),
        ("worker", "WORKER_METRICS_PORT"),
        ("up", "WORKER_METRICS_PORT"),
        ("monitor", "VM_PORT"),
        ("monitor", "VMALERT_PORT"),
    ],
)
def test_a_taken_port_is_one_line_naming_its_setting(
    command: str, variable: str, taken_port: int, env: dict[str, str], tmp_path: Path
) -> None:
    ports = {name: str(free_port()) for name in ("PORT", "WORKER_METRICS_PORT", "VM_PORT", "VMALERT_PORT")}
    result = _cli([command], tmp_path, {**env, **ports, variable: str(taken_port)})
    assert result.returncode != 0
    assert _errors(result) == [
        f"error: {variable}: 127.0.0.1:{taken_port} is in use (set {variable} or stop the other process)"
    ]


# ------------------------------------------------------------------------------ settings and servers


@pytest.mark.parametrize(
    ("command", "overrides", "says"),
    [
        ("create-user", {"PORT": "abc"}, "error: PORT: expected a whole number, got 'abc'"),
        ("api", {"HOST": "0.0.0.0.0"}, "error: HOST: '0.0.0.0.0' is neither an IP address nor a host name"),
        ("api", {"DATABASE_URL": "postgresql://postgres@127.0.0.1:{closed}/x"}, "error: DATABASE_URL: cannot reach"),
        ("init", {"DATABASE_URL": "postgresql://{user}@{server}/no_such_database"}, "error: DATABASE_URL: database"),
        ("init", {"DATABASE_URL": "postgresql://no_such_role@{server}/postgres"}, "error: DATABASE_URL: PostgreSQL at"),
        ("up", {"REDIS_URL": "redis://127.0.0.1:{closed}/0"}, "error: REDIS_URL: cannot reach Redis at 127.0.0.1:"),
        ("init", {"ADMIN_PASSWORD": "short"}, "error: ADMIN_PASSWORD: password must be at least"),
        ("init", {"ADMIN_EMAIL": "nope"}, "error: ADMIN_EMAIL: not an e-mail address"),
    ],
)
def test_wrong_configuration_is_one_line_naming_the_variable(
    command: str, overrides: dict[str, str], says: str, settings: Settings, env: dict[str, str], tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database.owner_url)
    fill = {"closed": str(free_port()), "user": url.username, "server": f"{url.host}:{url.port}"}
    values = {name: value.format(**fill) for name, value in overrides.items()}
    ports = {"PORT": str(free_port()), "WORKER_METRICS_PORT": str(free_port())}
    args = [command] + (["nobody", "--email", "n@example.com", "--password-stdin"] if command == "create-user" else [])
    started = time.monotonic()
    result = _cli(args, tmp_path, {**env, **ports, **values, "ADMIN_USERNAME": "first-admin"}, stdin="x" * 20)
    assert result.returncode != 0, result.stdout
    errors = _errors(result)
    assert len(errors) == 1 and errors[0].startswith(says), result.stderr
    assert time.monotonic() - started < 30  # a short retry, not a hang


# ------------------------------------------------------------------------------ the CLI


def test_cli_refusals_name_the_argument_and_change_nothing(env: dict[str, str], tmp_path: Path) -> None:
    made = _cli(["init"], tmp_path, {**env, "ADMIN_PASSWORD": "first operator secret"})
    assert made.returncode == 0, made.stderr
    bad_email = _cli(["create-user", "zed", "--email", "not-an-address", "--password-stdin"], tmp_path, env, "p" * 20)
    assert _errors(bad_email) == [
        "error: --email: not an e-mail address (expected one like name@example.com, at most 255 characters)"
    ]
    bad_role = _cli(["create-user", "zed", "--email", "z@example.com", "--role", "Admin"], tmp_path, env)
    assert _errors(bad_role)[0].startswith("error: --role: a role is a lowercase name")
    nobody = _cli(["show-user", "nobody"], tmp_path, env)
    assert _errors(nobody) == ["error: no user named 'nobody'"]
    bogus = _cli(["migrate", "--revision", "bogus"], tmp_path, env)
    assert len(_errors(bogus)) == 1 and "--revision bogus: Can't locate revision" in bogus.stderr
    # Destructive steps ask first; without a terminal they need --yes, and nothing changes.
    drop = _cli(["downgrade", "--revision", "base"], tmp_path, env)
    assert drop.returncode != 0 and "every user" in _errors(drop)[0] and "--yes" in _errors(drop)[0]
    assert "first-admin" not in _cli(["list-users"], tmp_path, env).stderr
    assert "admin" in _cli(["list-users"], tmp_path, env).stdout
    secret = (tmp_path / ".env").read_text()
    force = _cli(["init", "--force"], tmp_path, env)
    assert "every access and refresh token" in _errors(force)[0] and (tmp_path / ".env").read_text() == secret
    forced = _cli(["init", "--force", "--yes"], tmp_path, env)
    assert forced.returncode == 0 and (tmp_path / ".env").read_text() != secret


def test_just_passes_a_spaced_username_as_one_argument(env: dict[str, str]) -> None:
    just = shutil.which("just")
    assert just, "just is installed by `pip install rust-just` (the README's first step)"
    result = subprocess.run(
        [just, "create-user", "bad user", "--email", "b@example.com", "--password-stdin"],
        cwd=ROOT,
        env=env,
        input="a long enough password\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "error: USERNAME: a username is 3-64 characters" in result.stderr, result.stderr


def test_downgrade_at_base_says_so(settings: Settings, env: dict[str, str], tmp_path: Path) -> None:
    from tests.conftest import _admin, _find_postgres, _with_database

    name = f"auth_empty_{os.getpid()}"
    admin = _find_postgres()[0]
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        result = _cli(["downgrade"], tmp_path, {**env, "DATABASE_URL": _with_database(admin, name)})
        assert result.returncode == 0 and _errors(result) == []
        assert "schema is empty (base); nothing to downgrade" in result.stdout
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_the_generated_admin_password_is_printed_last_in_a_box(env: dict[str, str], tmp_path: Path) -> None:
    result = _cli(["init"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-4:]
    assert last[0].startswith("+--") and last[3] == last[0]
    assert re.fullmatch(r"\| admin password \(shown once, store it now\): \S{20,} +\|", last[1]), last
    assert "lost it? `just set-password admin`" in last[2]


# ------------------------------------------------------------------------------ Ctrl-C and monitor


def _urls(text: str) -> list[str]:
    # The supervisor's own lines (the children's logs share the file and may interleave).
    ours = re.compile(r"^(VictoriaMetrics|vmalert|  (scrape targets|query API|example)):")
    printed = "\n".join(line for line in text.splitlines() if ours.match(line))
    found = re.findall(r"http://127\.0\.0\.1:\d+[^\s']*", printed)
    return [url[:-1] if url.endswith(")") and url.count("(") < url.count(")") else url for url in found]


@pytest.mark.parametrize("command", ["up", "monitor"])
@pytest.mark.parametrize("attempt", [1, 2])  # the noise came on two stops out of three
def test_ctrl_c_stops_every_process_cleanly(command: str, attempt: int, env: dict[str, str], tmp_path: Path) -> None:
    """The terminal's Ctrl-C reaches the whole foreground group: each process stops once,
    quietly, with one line per process; `monitor` prints only URLs that answer."""
    ports = {name: str(free_port()) for name in ("PORT", "WORKER_METRICS_PORT", "VM_PORT", "VMALERT_PORT")}
    log_path = tmp_path / f"{command}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "auth_service", command],
            cwd=tmp_path,
            env={**env, **ports, "AUTH_SERVICE_DATA_DIR": str(tmp_path / ".data")},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal's foreground job
        )
        try:
            wait_healthy(f"http://127.0.0.1:{ports['PORT']}", proc, timeout=60)
            deadline = time.monotonic() + 30
            while "Starting worker" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            if command == "monitor":
                urls = _urls(log_path.read_text())
                assert len(urls) >= 3, log_path.read_text()
                for url in urls:
                    deadline = time.monotonic() + 20
                    while True:
                        try:
                            answer = httpx.get(url, timeout=2)
                            break
                        except httpx.TransportError:
                            assert time.monotonic() < deadline, f"{url} never answered"
                            time.sleep(0.2)
                    assert answer.status_code == 200, f"{url}: {answer.status_code}"
            time.sleep(1)  # let every child finish starting up, as a person would
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = log_path.read_text()
    assert code == 0, output
    for noise in ("Traceback", "Exception", "CancelledError", "Error"):
        assert noise not in output, output
    stopped = [line for line in output.splitlines() if line.startswith("stopped ")]
    expected = {"api", "worker"} | ({"victoria-metrics", "vmalert"} if command == "monitor" else set())
    assert {line.removeprefix("stopped ") for line in stopped} == expected, output


def test_a_worker_on_its_own_links_where_the_api_listens(env: dict[str, str], tmp_path: Path) -> None:
    """`just worker` with PORT=18400 writes links to :18400, as `just up` does (one rule, in the
    settings, for every process; the jobs build links from settings.pages)."""
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "auth_service", "worker"],
        cwd=tmp_path,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # at once: a stop while the child starts still stops it
        rest, _ = proc.communicate(timeout=30)
    assert first.strip() == f"worker starting (arq); links in e-mails point at http://127.0.0.1:{port}"
    assert proc.returncode == 0 and "stopped worker" in rest, rest
