"""Administration end to end: a real API process, the arq worker and an SMTP server for the
invitation; the CLI recipes (`set-roles`, `list-users`, `show-user`, `audit`) as subprocesses,
writing the same audit events as the API."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from auth_service.settings import Settings
from tests.conftest import PYTHON
from tests.e2e.conftest import api_server, child_env, run_cli, stop_process
from tests.e2e.test_accounts import _wait_subject
from tests.e2e.test_workers import _spawn, _worker_env
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.smtp import body_text, smtp_server

CHOSEN = "the password I chose myself"


async def test_an_invited_user_chooses_a_password_from_the_mail_and_signs_in(
    settings: Settings, tmp_path: Path
) -> None:
    await create_user(settings, username="root", roles=["admin"])
    with smtp_server() as (handler, smtp_port), api_server(settings, tmp_path) as base:
        worker = _spawn(
            [PYTHON, "-m", "tasks"], _worker_env(settings, smtp_port, PUBLIC_BASE_URL=base), tmp_path / "w.log"
        )
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                root = http.post("/api/v1/auth/login", json={"username": "root", "password": DEFAULT_PASSWORD}).json()
                created = http.post(
                    "/api/v1/admin/users",
                    json={"username": "ines", "email": "ines@example.com", "roles": ["support"]},
                    headers=bearer(root["access_token"]),
                )
                assert created.status_code == 201, created.text
                assert created.json()["email_verified"] is False
                mail = _wait_subject(handler, "Your new account: choose a password")
                assert mail["To"] == "ines@example.com"
                link = re.search(r"(http://\S+/reset-password\?token=\S+)", body_text(mail))
                assert link, body_text(mail)
                token = link.group(1).split("token=", 1)[1]
                done = http.post("/reset-password", data={"token": token, "new_password": CHOSEN})
                assert done.status_code == 200, done.text
                tokens = http.post("/api/v1/auth/login", json={"username": "ines", "password": CHOSEN})
                assert tokens.status_code == 200, tokens.text
                me = http.get("/api/v1/users/me", headers=bearer(tokens.json()["access_token"])).json()
                assert me["email_verified"] is True and me["roles"] == ["support"]
                again = http.post("/reset-password", data={"token": token, "new_password": "another one entirely"})
                assert again.status_code == 400  # the invitation works once
        finally:
            stop_process(worker)


async def test_the_cli_recipes_change_roles_list_show_and_read_the_audit_log(
    settings: Settings, tmp_path: Path
) -> None:
    await create_user(settings, username="root", roles=["admin"])
    await create_user(settings, username="dora", roles=["user"])
    await create_user(settings, username="old", is_active=False)
    env = child_env(DATABASE_URL=settings.database.owner_url, REDIS_URL=settings.redis.url, JWT_SECRET_KEY="x" * 40)
    with api_server(settings, tmp_path) as base, httpx.Client(base_url=base, timeout=10) as http:
        dora = http.post("/api/v1/auth/login", json={"username": "dora", "password": DEFAULT_PASSWORD}).json()
        assert http.get("/api/v1/auth/verify", headers=bearer(dora["access_token"])).status_code == 200

        changed = run_cli(["set-roles", "dora", "user,support"], tmp_path, env)
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout.strip() == "roles of 'dora' are now support,user; all its tokens are revoked"
        # The running API refuses dora's token at once: the CLI told Redis.
        dead = http.get("/api/v1/auth/verify", headers=bearer(dora["access_token"]))
        assert dead.status_code == 401 and dead.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
        same = run_cli(["set-roles", "dora", "support,user"], tmp_path, env)
        assert same.returncode == 0 and "unchanged" in same.stdout

        last = run_cli(["set-roles", "root", "user"], tmp_path, env)
        assert last.returncode == 2
        assert last.stderr.strip() == "error: this is the last admin who can sign in: make another user admin first"

        audit = run_cli(["audit", "--since", "1h"], tmp_path, env)
        assert audit.returncode == 0, audit.stderr
        rows = audit.stdout.splitlines()
        assert rows[0].split() == ["AT", "ACTOR", "ACTION", "TARGET", "DETAILS"]
        # Newest first: the refused demotion of the last admin, then dora's role change.
        assert [row.split()[2:4] for row in rows[1:-1]] == [["cli", "admin.denied"], ["cli", "user.roles"]]
        assert '"reason":"last_admin"' in rows[1] and '{"added":["support"],"removed":[]}' in rows[2]
        assert rows[-1] == "2 event(s)"

        # What an admin does through the API shows under its name.
        root = http.post("/api/v1/auth/login", json={"username": "root", "password": DEFAULT_PASSWORD}).json()
        users = http.get("/api/v1/admin/users?q=dora", headers=bearer(root["access_token"])).json()["items"]
        assert (
            http.post(f"/api/v1/admin/users/{users[0]['id']}/logout", headers=bearer(root["access_token"])).status_code
            == 204
        )
        by_root = run_cli(["audit", "--actor", "root"], tmp_path, env)
        assert [row.split()[2:4] for row in by_root.stdout.splitlines()[1:-1]] == [["root", "user.logout_all"]]
