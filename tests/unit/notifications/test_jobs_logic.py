from __future__ import annotations

import uuid
from email.message import EmailMessage

import pytest

from auth_service.domain.auth.suspicious import LoginHistory, SuspicionRules, suspicious_reasons
from auth_service.domain.notifications.jobs import backoff
from auth_service.domain.notifications.mailer import BreakerState, CircuitBreaker, TransientMailError
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.queue import JobName

RULES = SuspicionRules(new_device_days=30, failures=5, failure_window_minutes=15)


@pytest.mark.parametrize(
    ("history", "reasons"),
    [
        (LoginHistory(has_earlier_success=True, seen_this_device=True, recent_failures=0), []),
        (LoginHistory(has_earlier_success=True, seen_this_device=False, recent_failures=0), ["new_device"]),
        (LoginHistory(has_earlier_success=False, seen_this_device=False, recent_failures=0), []),
        (LoginHistory(has_earlier_success=True, seen_this_device=True, recent_failures=4), []),
        (LoginHistory(has_earlier_success=True, seen_this_device=True, recent_failures=5), ["after_failures"]),
        (LoginHistory(has_earlier_success=False, seen_this_device=False, recent_failures=9), ["after_failures"]),
        (
            LoginHistory(has_earlier_success=True, seen_this_device=False, recent_failures=7),
            ["new_device", "after_failures"],
        ),
    ],
)
def test_suspicious_rule(history: LoginHistory, reasons: list[str]) -> None:
    assert suspicious_reasons(history, RULES) == reasons


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff(n) for n in range(1, 8)] == [5, 10, 20, 40, 80, 160, 300]


def test_signed_links_expire_and_resist_tampering() -> None:
    signer = LinkSigner(b"k" * 32, ttl_seconds=60)
    note, user = uuid.uuid4(), uuid.uuid4()
    token = signer.sign(note, user, now=1000)
    link = signer.verify(token, now=1030)
    assert link is not None and link.notification_id == note and link.user_id == user
    assert signer.verify(token, now=1061) is None  # expired
    assert LinkSigner(b"x" * 32, ttl_seconds=60).verify(token, now=1030) is None  # other key
    payload, mac = token.split(".")
    assert signer.verify(f"{payload}A.{mac}", now=1030) is None
    assert signer.verify("garbage", now=1030) is None and signer.verify("a.b", now=1030) is None


class FlakyMailer:
    def __init__(self) -> None:
        self.fail = True
        self.calls = 0

    async def send(self, message: EmailMessage) -> None:
        self.calls += 1
        if self.fail:
            raise TransientMailError("down")


async def test_circuit_breaker_opens_probes_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("auth_service.domain.notifications.mailer.time.monotonic", lambda: clock[0])
    inner = FlakyMailer()
    breaker = CircuitBreaker(inner, failures=3, reset_seconds=30)
    for _ in range(3):
        with pytest.raises(TransientMailError):
            await breaker.send(EmailMessage())
    assert breaker.state == BreakerState.OPEN and inner.calls == 3
    with pytest.raises(TransientMailError, match="circuit open"):
        await breaker.send(EmailMessage())
    assert inner.calls == 3  # the server is left alone while open
    clock[0] += 31
    with pytest.raises(TransientMailError):
        await breaker.send(EmailMessage())  # the probe fails: open again
    assert breaker.state == BreakerState.OPEN and inner.calls == 4
    clock[0] += 31
    inner.fail = False
    await breaker.send(EmailMessage())  # the probe succeeds
    assert breaker.state == BreakerState.CLOSED and inner.calls == 5


def test_every_job_is_registered_with_arq_and_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    from auth_service.settings import get_settings

    # The Celery app reads its broker from the settings when imported.
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/x")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("JWT_SECRET_KEY", "k" * 32)
    get_settings.cache_clear()
    from tasks.celery_app import app

    get_settings.cache_clear()
    from tasks.worker import FUNCTIONS, WorkerSettings

    names = {name.value for name in JobName}
    assert {getattr(f, "__name__", "") for f in WorkerSettings.functions} == names
    assert set(FUNCTIONS) == set(JobName)
    assert names <= set(app.tasks)
    seed = {
        "send_login_notification_email",
        "send_suspicious_login_alert",
        "cleanup_expired_tokens",
        "generate_daily_login_report",
    }
    assert seed <= names
