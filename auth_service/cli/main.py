"""Command line: the primer (`init`), user management, migrations and the process launcher.

Each command prints what it did; errors say what to do and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import structlog
from dotenv import dotenv_values

from auth_service.cli.embedded import ensure_postgres, ensure_redis
from auth_service.domain.users.schemas import UserCreate
from auth_service.domain.users.service import UserService
from auth_service.settings import Settings, SettingsError, get_settings

__all__ = ["main"]

T = TypeVar("T")
ENV_FILE = Path(".env")


def _out(message: str) -> None:
    print(message, flush=True)


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _configured(name: str) -> bool:
    if os.environ.get(name):
        return True
    return ENV_FILE.is_file() and bool(dotenv_values(ENV_FILE).get(name))


def resolve_servers() -> Settings:
    """Settings, starting the embedded PostgreSQL / Redis for whichever URL is unset."""
    if not _configured("DATABASE_URL"):
        os.environ["DATABASE_URL"] = ensure_postgres()
    if not _configured("REDIS_URL"):
        os.environ["REDIS_URL"] = ensure_redis()
    get_settings.cache_clear()
    try:
        return get_settings()
    except SettingsError as exc:
        for name, message in exc.problems[:-1]:
            _err(f"{name}: {message}")
        name, message = exc.problems[-1]
        _fail(f"{name}: {message} (set it in the environment or .env; `just init` writes a .env)")
        raise  # unreachable; keeps type checkers content


# ---- primer -----------------------------------------------------------------------------------


def write_env_file(force: bool) -> None:
    if ENV_FILE.exists() and not force:
        _out(f"kept {ENV_FILE} (exists; use --force to replace it)")
        return
    ENV_FILE.write_text(
        "# Written by `auth-service init`. Secrets: keep this file out of version control.\n"
        f"JWT_SECRET_KEY={secrets.token_hex(32)}\n"
    )
    ENV_FILE.chmod(0o600)
    _out(f"wrote {ENV_FILE} with a new JWT_SECRET_KEY")


def migrate(settings: Settings, revision: str = "head") -> None:
    from db.config import current_revision, upgrade

    before = current_revision(settings.async_database_url)
    upgrade(settings.async_database_url, revision)
    after = current_revision(settings.async_database_url)
    if before == after:
        _out(f"database schema already at {after}; nothing to do")
    else:
        _out(f"database schema migrated {before or 'empty'} -> {after}")


def downgrade(settings: Settings, revision: str) -> None:
    from db.config import current_revision
    from db.config import downgrade as db_downgrade

    before = current_revision(settings.async_database_url)
    db_downgrade(settings.async_database_url, revision)
    _out(f"database schema downgraded {before} -> {current_revision(settings.async_database_url) or 'empty'}")


async def _with_users(settings: Settings, action: Callable[[UserService], Awaitable[T]]) -> T:
    """Run `action(UserService)` with a real session, the hasher and the revocation store (all a
    user change needs; not the API's whole composition root)."""
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from auth_service.domain.sessions.revocation import RevocationStore
    from auth_service.wiring import password_hasher_for

    engine = create_async_engine(settings.async_database_url, hide_parameters=True)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    timeout = settings.redis_timeout
    redis = Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    hasher = password_hasher_for(settings)
    revocation = RevocationStore(
        redis, factory, prefix=settings.redis_key_prefix, access_ttl=settings.access_ttl_seconds
    )
    try:
        async with factory() as session:
            return await action(UserService(session, hasher, revocation))
    finally:
        await revocation.close()
        hasher.close()
        await redis.aclose()
        await engine.dispose()


def create_first_admin(settings: Settings) -> None:
    async def run(users: UserService) -> None:
        if await users.count_admins() > 0:
            _out("an admin user exists; nothing to do")
            return
        username = os.environ.get("ADMIN_USERNAME", "admin")
        email = os.environ.get("ADMIN_EMAIL", "admin@example.com")
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(18)
        user = await users.create(UserCreate(username=username, email=email, password=password, roles=["admin"]))
        _out(f"created admin user {user.username!r} ({user.email})")
        if not os.environ.get("ADMIN_PASSWORD"):
            _out(f"  generated password (shown once, store it now): {password}")

    _run_user_action(settings, run)


def _run_user_action(settings: Settings, action: Callable[[UserService], Awaitable[None]]) -> None:
    from redis.exceptions import RedisError

    from auth_service.domain.users.service import InvalidUserData
    from auth_service.lib.errors import AuthServiceError

    try:
        asyncio.run(_with_users(settings, action))
    except InvalidUserData as exc:
        _fail(f"invalid user data: {exc}")
    except msgspec.ValidationError as exc:
        _fail(f"invalid user data: {exc}")
    except AuthServiceError as exc:  # the domain's refusals: policy, taken name, no such user
        _fail(str(exc))
    except RedisError:
        _fail("Redis is unreachable; nothing was changed. Check REDIS_URL and retry.", code=1)


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The new password: from stdin (--password-stdin), asked twice on a terminal, or generated."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("New password (empty: generate one): ")
        if first:
            if getpass.getpass("Repeat it: ") != first:
                _fail("the two passwords differ; nothing was changed")
            return first, False
    return secrets.token_urlsafe(18), True


def _list_users(settings: Settings) -> None:
    async def run(users: UserService) -> None:
        rows = await users.list_users()
        _out(f"{'username':24} {'e-mail':32} {'roles':16} active  id")
        for user in rows:
            _out(
                f"{user.username:24} {user.email:32} {','.join(user.roles) or '-':16} "
                f"{'yes' if user.is_active else 'no':7} {user.id}"
            )
        _out(f"{len(rows)} user(s)")

    _run_user_action(settings, run)


def _show_user(settings: Settings, username: str) -> None:
    async def run(users: UserService) -> None:
        user = await users.show(username)
        for label, value in (
            ("username", user.username),
            ("id", user.id),
            ("e-mail", user.email),
            ("roles", ",".join(user.roles) or "-"),
            ("active", "yes" if user.is_active else "no"),
        ):
            _out(f"{label + ':':10} {value}")

    _run_user_action(settings, run)


# ---- processes -------------------------------------------------------------------------------


def _default_public_url(host: str, port: int) -> None:
    """Links in e-mails point at where this API listens, unless PUBLIC_BASE_URL says otherwise."""
    if not _configured("PUBLIC_BASE_URL"):
        scheme = "https" if _configured("TLS_CERT_FILE") else "http"
        os.environ["PUBLIC_BASE_URL"] = f"{scheme}://{host}:{port}"


def run_api(host: str, port: int) -> None:
    import uvicorn

    _default_public_url(host, port)
    settings = resolve_servers()
    from observability.logging import configure_logging

    base = f"{'https' if settings.tls_cert_file else 'http'}://{host}:{port}"
    # Through the logger, not print: with JSON logs every line of the process is one JSON object.
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    structlog.get_logger().info(
        "api.starting", url=base, docs=f"{base}/docs" if settings.docs_enabled else "off", env=settings.app_env
    )
    uvicorn.run(
        "auth_service.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,  # no "Server: uvicorn" banner
        proxy_headers=False,  # TRUSTED_PROXIES decides whom to believe, not uvicorn
        # Checked with the settings: both or neither, readable files.
        ssl_certfile=settings.tls_cert_file or None,
        ssl_keyfile=settings.tls_key_file or None,
    )


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_worker() -> int:
    resolve_servers()
    _out("worker starting (arq)")
    return _supervise([[sys.executable, "-m", "tasks"]])


def run_up(host: str, port: int) -> int:
    _default_public_url(host, port)
    resolve_servers()
    return _supervise(
        [
            [sys.executable, "-m", "auth_service", "api", "--host", host, "--port", str(port)],
            [sys.executable, "-m", "tasks"],
        ]
    )


def run_monitor(host: str, port: int) -> int:
    """The service (API + worker) with VictoriaMetrics scraping it and vmalert on our rules."""
    import json
    import shutil

    import observability
    from auth_service.cli.embedded import DATA_DIR

    _default_public_url(host, port)
    settings = resolve_servers()
    binaries = {name: shutil.which(name) for name in ("victoria-metrics", "vmalert")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        _fail(f"{', '.join(missing)} not found; install Debian's package: apt-get install victoria-metrics")
    vm_port = int(os.environ.get("VM_PORT", "8428"))
    vmalert_port = int(os.environ.get("VMALERT_PORT", "8880"))
    folder = DATA_DIR / "monitor"
    folder.mkdir(parents=True, exist_ok=True)
    scrape = folder / "scrape.yml"  # JSON is YAML: no YAML writer needed
    scrape.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "15s"},
                "scrape_configs": [
                    {"job_name": "auth-api", "static_configs": [{"targets": [f"{host}:{port}"]}]},
                    {
                        "job_name": "auth-worker",
                        "static_configs": [
                            {"targets": [f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"]}
                        ],
                    },
                ],
            },
            indent=2,
        )
    )
    rules = Path(observability.__file__).parent / "alerts" / "rules.yml"
    vm_url = f"http://127.0.0.1:{vm_port}"
    _out(f"VictoriaMetrics: {vm_url}/vmui  (data in {folder / 'victoria-metrics'}, scraping {scrape})")
    _out(f"vmalert: http://127.0.0.1:{vmalert_port}/vmalert/alerts  (rules {rules})")
    return _supervise(
        [
            [sys.executable, "-m", "auth_service", "api", "--host", host, "--port", str(port)],
            [sys.executable, "-m", "tasks"],
            [
                str(binaries["victoria-metrics"]),
                f"-storageDataPath={folder / 'victoria-metrics'}",
                f"-httpListenAddr=127.0.0.1:{vm_port}",
                f"-promscrape.config={scrape}",
                "-loggerLevel=WARN",
            ],
            [
                str(binaries["vmalert"]),
                f"-rule={rules}",
                f"-datasource.url={vm_url}",
                f"-remoteWrite.url={vm_url}",
                f"-notifier.url={os.environ.get('ALERTMANAGER_URL', 'http://127.0.0.1:9093')}",
                f"-httpListenAddr=127.0.0.1:{vmalert_port}",
                "-loggerLevel=WARN",
            ],
        ]
    )


def _supervise(commands: list[list[str]]) -> int:
    """Run the children; when one exits or we are interrupted, stop them all."""
    children = [subprocess.Popen(cmd, env=_child_env()) for cmd in commands]

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                children[0].wait(timeout=0.5)
    except KeyboardInterrupt:
        pass
    stop()
    codes = []
    for child in children:
        try:
            codes.append(child.wait(timeout=15))
        except subprocess.TimeoutExpired:
            child.kill()
            codes.append(child.wait())
    _out("stopped")
    return max((abs(code) for code in codes if code not in (0, -signal.SIGINT, 130)), default=0)


# ---- entry point -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="auth-service", description="Auth service operations")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="write .env (if absent), migrate, create the first admin")
    init.add_argument("--force", action="store_true", help="replace an existing .env with new secrets")
    mig = sub.add_parser("migrate", help="upgrade the schema (default head)")
    mig.add_argument("--revision", default="head")
    down = sub.add_parser("downgrade", help="downgrade the schema (default one step)")
    down.add_argument("--revision", default="-1")
    create = sub.add_parser("create-user", help="add a user; password from stdin or generated")
    create.add_argument("username")
    create.add_argument("--email", required=True)
    create.add_argument("--role", action="append", default=[], dest="roles", help="repeatable, e.g. --role admin")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub.add_parser("deactivate-user", help="disable a user and revoke all tokens").add_argument("username")
    sub.add_parser("activate-user", help="re-enable a user").add_argument("username")
    sub.add_parser("list-users", help="every user: name, e-mail, roles, active, id")
    sub.add_parser("show-user", help="one user's details").add_argument("username")
    setpw = sub.add_parser("set-password", help="change a password (revokes all tokens)")
    setpw.add_argument("username")
    setpw.add_argument("--password-stdin", action="store_true")
    for name, text in (
        ("api", "run the HTTP API"),
        ("up", "run the API and the worker together"),
        ("monitor", "run API, worker, VictoriaMetrics and vmalert together"),
    ):
        proc = sub.add_parser(name, help=text)
        proc.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        proc.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    sub.add_parser("worker", help="run the background worker")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command
    if command == "init":
        write_env_file(args.force)
        settings = resolve_servers()
        migrate(settings)
        create_first_admin(settings)
        return 0
    if command == "api":
        run_api(args.host, args.port)
        return 0
    if command == "up":
        return run_up(args.host, args.port)
    if command == "monitor":
        return run_monitor(args.host, args.port)
    if command == "worker":
        return run_worker()
    settings = resolve_servers()
    if command == "migrate":
        migrate(settings, args.revision)
    elif command == "downgrade":
        downgrade(settings, args.revision)
    elif command == "create-user":
        _create_user(settings, args)
    elif command in ("deactivate-user", "activate-user"):
        _set_active(settings, args.username, command == "activate-user")
    elif command == "list-users":
        _list_users(settings)
    elif command == "show-user":
        _show_user(settings, args.username)
    elif command == "set-password":
        _set_password(settings, args)
    return 0


def _create_user(settings: Settings, args: argparse.Namespace) -> None:
    password, generated = _read_password(args.password_stdin)

    async def run(users: UserService) -> None:
        user = await users.create(
            UserCreate(username=args.username, email=args.email, password=password, roles=args.roles)
        )
        _out(f"created user {user.username!r} id={user.id} roles={','.join(user.roles) or '-'}")
        if generated:
            _out(f"  generated password (shown once): {password}")

    _run_user_action(settings, run)


def _set_active(settings: Settings, username: str, active: bool) -> None:
    async def run(users: UserService) -> None:
        user = await users.set_active(username, active)
        _out(f"user {user.username!r} is now {'active' if active else 'deactivated; all its tokens are revoked'}")

    _run_user_action(settings, run)


def _set_password(settings: Settings, args: argparse.Namespace) -> None:
    password, generated = _read_password(args.password_stdin)

    async def run(users: UserService) -> None:
        user = await users.set_password(args.username, password)
        _out(f"password of {user.username!r} changed; all its tokens are revoked")
        if generated:
            _out(f"  generated password (shown once): {password}")

    _run_user_action(settings, run)
