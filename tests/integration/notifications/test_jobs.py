"""Background jobs on a real arq worker, real Redis, real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.app import create_app
from auth_service.domain.auth.jobs import generate_daily_login_report
from auth_service.lib.queue import JobName
from auth_service.settings import Settings
from db.models import LoginRecord, Notification, User
from tasks.worker import FUNCTIONS, job_context
from tests.conftest import make_settings, run_engine
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.smtp import RecordingHandler, body_html, body_text, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[RecordingHandler, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def mail_settings(database_url: str, redis_url: str, smtp: tuple[RecordingHandler, int]) -> Settings:
    return make_settings(
        database_url,
        redis_url,
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=str(smtp[1]),
        smtp_starttls="false",
        public_base_url="https://auth.example.com",
    )


@pytest.fixture
async def app_client(mail_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(mail_settings)) as client:
        yield client


async def run_worker(settings: Settings) -> None:
    """A real arq worker in burst mode: runs what is queued (retries included), then stops."""
    async with job_context(settings) as ctx:
        pool = await create_pool(RedisSettings.from_dsn(settings.redis.url))
        worker = Worker(
            functions=list(FUNCTIONS.values()),
            redis_pool=pool,
            burst=True,
            poll_delay=0.1,
            ctx=ctx,
            handle_signals=False,
            max_jobs=4,
            job_timeout=settings.jobs.timeout,
        )
        try:
            await worker.main()
        finally:
            await worker.close()


async def login(client: AsyncTestClient[Any], **headers: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_login_sends_a_notification_with_when_where_and_a_not_me_link(
    app_client: AsyncTestClient[Any], mail_settings: Settings, smtp: tuple[RecordingHandler, int], alice: User
) -> None:
    await login(app_client, **{"User-Agent": "Firefox/130"})
    await run_worker(mail_settings)
    (message,) = smtp[0].wait_for(1)
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "New sign-in to your account"
    text = body_text(message)
    assert "Firefox/130" in text and "(UTC)" in text and re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    assert "https://auth.example.com/api/v1/auth/not-me?token=" in text
    assert "This wasn" in body_html(message)
    assert message["Message-ID"].startswith("<login-")


async def test_suspicious_login_sends_an_alert(
    app_client: AsyncTestClient[Any],
    mail_settings: Settings,
    smtp: tuple[RecordingHandler, int],
    alice: User,
    db_session: AsyncSession,
) -> None:
    db_session.add(
        LoginRecord(user_id=alice.id, username="alice", ip_address="198.51.100.1", user_agent="Old", success=True)
    )
    await db_session.commit()
    await login(app_client, **{"User-Agent": "NewBrowser/1"})  # another device than the one on record
    await run_worker(mail_settings)
    messages = smtp[0].wait_for(2)
    subjects = sorted(m["Subject"] for m in messages)
    assert subjects == ["New sign-in to your account", "Suspicious sign-in to your account"]
    alert = next(m for m in messages if m["Subject"].startswith("Suspicious"))
    assert "device and network not used" in body_text(alert)


async def test_no_alert_for_a_known_device(
    app_client: AsyncTestClient[Any],
    mail_settings: Settings,
    smtp: tuple[RecordingHandler, int],
    alice: User,
    db_session: AsyncSession,
) -> None:
    await login(app_client, **{"User-Agent": "Same/1"})
    await login(app_client, **{"User-Agent": "Same/1"})
    kinds = (await db_session.execute(select(Notification.kind))).scalars().all()
    assert sorted(kinds) == ["login", "login"]


async def test_not_me_link_shows_a_page_then_revokes_everything_once(
    app_client: AsyncTestClient[Any], mail_settings: Settings, smtp: tuple[RecordingHandler, int], alice: User
) -> None:
    first = await login(app_client)
    await run_worker(mail_settings)
    link = re.search(r"https://auth\.example\.com(\S+)", body_text(smtp[0].wait_for(1)[0])).group(1)  # type: ignore[union-attr]
    second = await login(app_client)

    page = await app_client.get(link)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<form method="post">' in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    # Opening the link (a mail scanner would) changed nothing.
    assert (await app_client.get("/api/v1/auth/verify", headers=bearer(first["access_token"]))).status_code == 200

    token = link.split("token=", 1)[1]
    done = await app_client.post(link, data={"token": token})
    assert done.status_code == 200 and "Change your password" in done.text
    for tokens in (first, second):
        assert (await app_client.get("/api/v1/auth/verify", headers=bearer(tokens["access_token"]))).status_code == 401
        refresh = await app_client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refresh.json()["error"]["code"] == "AUTH_TOKEN_REVOKED"
    assert (await app_client.post(link, data={"token": token})).status_code == 410  # single use
    async with run_engine(mail_settings.database.url).connect() as conn:
        events = (await conn.execute(text("SELECT action, actor_id, details FROM audit_events"))).all()
    assert [(e.action, e.actor_id, e.details) for e in events] == [("account.not_me", alice.id, {"sessions": 2})]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (await app_client.get(f"/api/v1/auth/not-me?token={forged}")).status_code == 403  # well-formed, unsigned
    assert (await app_client.get(f"/api/v1/auth/not-me?token={token[:-1]}")).status_code == 400  # not the format


async def test_smtp_refusing_then_accepting_is_retried_and_delivered_once(
    app_client: AsyncTestClient[Any],
    mail_settings: Settings,
    smtp: tuple[RecordingHandler, int],
    alice: User,
    db_session: AsyncSession,
) -> None:
    handler, _ = smtp
    handler.refuse = 1
    await login(app_client)
    await run_worker(mail_settings)  # first try deferred (451), retried after the backoff
    assert handler.attempts == 2
    assert len(handler.wait_for(1)) == 1
    note = (await db_session.execute(select(Notification))).scalar_one()
    assert note.sent_at is not None and note.attempts == 2
    # A duplicate enqueue of the same notification sends nothing more.
    pool = await create_pool(RedisSettings.from_dsn(mail_settings.redis.url))
    await pool.enqueue_job(note.job, _job_id=f"again:{note.id}", notification_id=str(note.id), **note.payload)
    await pool.aclose()
    await run_worker(mail_settings)
    assert len(handler.messages) == 1


async def test_queue_down_at_login_keeps_the_notification_and_the_dispatcher_delivers_it(
    database_url: str,
    redis_url: str,
    mail_settings: Settings,
    smtp: tuple[RecordingHandler, int],
    alice: User,
    db_session: AsyncSession,
) -> None:
    from tests.conftest import free_port

    dead_queue = make_settings(
        database_url,
        redis_url,
        queue_redis_url=f"redis://127.0.0.1:{free_port()}/0",
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=str(smtp[1]),
        smtp_starttls="false",
    )
    async with AsyncTestClient(app=create_app(dead_queue)) as client:
        assert (await login(client))["access_token"]  # the login never fails for the queue
    note = (await db_session.execute(select(Notification))).scalar_one()
    assert note.sent_at is None
    # Later the queue is back: the dispatcher finds the old unsent row and enqueues it.
    await db_session.execute(
        Notification.__table__.update().values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    )
    await db_session.commit()
    async with job_context(mail_settings) as ctx:
        assert await FUNCTIONS[JobName.DISPATCH_OUTBOX](ctx) == 1
    await run_worker(mail_settings)
    assert len(smtp[0].wait_for(1)) == 1


async def test_daily_report_numbers_match_the_records(
    mail_settings: Settings, smtp: tuple[RecordingHandler, int], db_session: AsyncSession
) -> None:
    admin = await create_user(mail_settings, username="boss", roles=["admin"])
    await create_user(mail_settings, username="former", roles=["admin"], is_active=False)
    bob = await create_user(mail_settings, username="bob")
    day = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    rows = [
        (admin.id, "boss", "10.0.0.1", True),
        (admin.id, "boss", "10.0.0.1", True),
        (bob.id, "bob", "10.0.0.2", True),
        (bob.id, "bob", "203.0.113.7", False),
        (None, "root", "203.0.113.7", False),
        (None, "root", "203.0.113.7", False),
        (None, "admin", "203.0.113.8", False),
    ]
    for i, (user_id, username, ip, ok) in enumerate(rows):
        db_session.add(
            LoginRecord(
                user_id=user_id,
                username=username,
                ip_address=ip,
                success=ok,
                failure_reason=None if ok else "bad_password",
                login_timestamp=day + dt.timedelta(hours=i),
            )
        )
    db_session.add(
        LoginRecord(
            user_id=bob.id,
            username="bob",
            ip_address="1.1.1.1",
            success=False,
            login_timestamp=day + dt.timedelta(days=1, minutes=1),
        )
    )  # the next day: not counted
    await db_session.commit()

    async with job_context(mail_settings) as ctx:
        result = await generate_daily_login_report(ctx, "2026-11-27")
    assert result["attempts"] == 7 and result["successes"] == 3 and result["failures"] == 4
    assert result["unique_users"] == 2
    assert abs(result["success_rate"] - 3 / 7) < 1e-9
    assert result["top_failing_ips"][0] == ("203.0.113.7", 3)
    assert result["top_failing_usernames"][0] == ("root", 2)
    assert result["recipients"] == 1
    (message,) = smtp[0].wait_for(1)
    assert message["To"] == "boss@example.com" and "2026-11-27" in message["Subject"]
    text = body_text(message)
    assert "Attempts: 7" in text and "Successful: 3 (42.9%)" in text and "Unique users: 2" in text
    assert "203.0.113.7: 3" in text and "root: 2" in text


async def test_deleted_user_is_a_permanent_failure_not_retried(
    app_client: AsyncTestClient[Any],
    mail_settings: Settings,
    smtp: tuple[RecordingHandler, int],
    alice: User,
    db_session: AsyncSession,
) -> None:
    await login(app_client)
    note = (await db_session.execute(select(Notification))).scalar_one()
    await db_session.execute(User.__table__.update().where(User.id == alice.id).values(is_active=False))
    await db_session.commit()
    async with job_context(mail_settings, job_try=1) as ctx:
        job = FUNCTIONS[JobName.SEND_LOGIN_NOTIFICATION_EMAIL]
        assert await job(ctx, notification_id=str(note.id), **note.payload) == "dropped"
    await db_session.refresh(note)
    assert note.dropped_at is not None and smtp[0].attempts == 0
    assert uuid.UUID(str(note.id))


@pytest.mark.parametrize("transport", ["lean", "arq"])
async def test_enqueue_writes_what_arq_writes_once_per_job_id(redis_url: str, transport: str) -> None:
    """The one-round-trip enqueue script and arq's own enqueue_job leave the same thing behind."""
    from auth_service.lib.queue import ArqQueue

    queue = ArqQueue(redis_url)
    if transport == "arq":
        queue._lean = None  # the path rediss:// URLs take
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        kwargs = {"user_id": "u-1", "ip_address": "192.0.2.1"}
        assert await queue.enqueue(JobName.SEND_LOGIN_NOTIFICATION_EMAIL, "notification:n-1", **kwargs)
        assert await queue.enqueue(JobName.SEND_LOGIN_NOTIFICATION_EMAIL, "notification:n-1", user_id="other")
        await pool.set("arq:result:notification:n-2", b"done")  # a finished job is not queued again
        assert await queue.enqueue(JobName.SEND_LOGIN_NOTIFICATION_EMAIL, "notification:n-2", **kwargs)
        (job,) = await pool.queued_jobs()
        assert job.job_id == "notification:n-1" and job.function == "send_login_notification_email"
        assert {k: v for k, v in job.kwargs.items() if k != "traceparent"} == kwargs
        assert job.args == () and job.job_try is None
        assert abs(job.enqueue_time.timestamp() - dt.datetime.now(dt.UTC).timestamp()) < 60
        assert 86_000 < await pool.ttl("arq:job:notification:n-1") <= 86_400
        assert await pool.zscore("arq:queue", "notification:n-1") is not None
    finally:
        await queue.close()
        await pool.aclose()


@pytest.mark.parametrize(
    "stored",
    ["victim@example.com,attacker@evil.example", "victim@example.com, Attacker <attacker@evil.example>", "a(b)@x.y"],
)
async def test_a_stored_address_that_is_not_one_mailbox_is_never_sent_to(
    app_client: AsyncTestClient[Any],
    mail_settings: Settings,
    smtp: tuple[RecordingHandler, int],
    alice: User,
    db_session: AsyncSession,
    stored: str,
) -> None:
    """Rows written before addresses were checked as stored (NFKC turned a full-width comma and at
    sign into ASCII after the check): the SMTP envelope would have named every mailbox in them.
    Dropped, not retried."""
    await db_session.execute(User.__table__.update().where(User.id == alice.id).values(email=stored))
    await db_session.commit()
    await login(app_client)
    await run_worker(mail_settings)
    note = (await db_session.execute(select(Notification))).scalar_one()
    await db_session.refresh(note)
    assert note.dropped_at is not None and note.sent_at is None
    assert smtp[0].attempts == 0


async def test_a_verification_mail_goes_to_the_address_its_link_was_made_for(
    app_client: AsyncTestClient[Any], mail_settings: Settings, smtp: tuple[RecordingHandler, int], alice: User
) -> None:
    """V, then A, before the worker runs: V's link goes to V (not to A, the address at sending
    time), and it is dead once the account moved on, even when it comes back to V."""
    headers = bearer((await login(app_client))["access_token"])
    for address in ("v@example.com", "a@example.com"):
        moved = await app_client.patch(
            "/api/v1/users/me", json={"email": address, "current_password": DEFAULT_PASSWORD}, headers=headers
        )
        assert moved.status_code == 200, moved.text
    await run_worker(mail_settings)
    messages = smtp[0].wait_for(5)  # the login notice, two links, two "your address changed"
    links = {
        m["To"]: re.search(r"verify-email\?token=(\S+)", body_text(m)).group(1)  # type: ignore[union-attr]
        for m in messages
        if m["Subject"] == "Confirm your e-mail address"
    }
    assert sorted(links) == ["a@example.com", "v@example.com"], [m["To"] for m in messages]
    back = await app_client.patch(
        "/api/v1/users/me", json={"email": "v@example.com", "current_password": DEFAULT_PASSWORD}, headers=headers
    )
    assert back.status_code == 200
    stale = await app_client.post("/api/v1/auth/verify-email", json={"token": links["v@example.com"]})
    assert stale.status_code == 400 and stale.json()["error"]["code"] == "LINK_INVALID"
    assert (await app_client.get("/api/v1/users/me", headers=headers)).json()["email_verified"] is False
