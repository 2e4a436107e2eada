"""Spans and logs: request → SQL/Redis → password/token, and a job linked to its request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from auth_service.lib.queue import JobName
from auth_service.settings import Settings
from db.models import User
from observability.setup import init_telemetry
from tests.factories import DEFAULT_PASSWORD


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    telemetry = init_telemetry(service_name="auth-service-api", version="test", environment="test")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.tracer_provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def _tree(finished: tuple[ReadableSpan, ...], root: ReadableSpan) -> list[ReadableSpan]:
    by_parent: dict[int, list[ReadableSpan]] = {}
    for span in finished:
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span)
    found, todo = [], [root]
    while todo:
        span = todo.pop()
        found.append(span)
        todo += by_parent.get(span.context.span_id, [])
    return found


async def test_login_span_tree_has_sql_redis_password_and_token(
    client: AsyncTestClient[Any], alice: User, spans: InMemorySpanExporter
) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": "alice", "password": DEFAULT_PASSWORD},
        headers={"X-Request-ID": "span-test-1"},
    )
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    roots = [s for s in finished if s.parent is None and s.attributes.get("request_id") == "span-test-1"]
    assert len(roots) == 1, [s.name for s in finished]
    root = roots[0]
    assert root.kind == trace.SpanKind.SERVER and "/api/v1/auth/login" in root.name
    tree = _tree(finished, root)
    names = {s.name for s in tree}
    assert {"auth.password.verify", "auth.token.issue"} <= names
    assert any(s.attributes.get("db.system") == "postgresql" for s in tree), names
    assert any(s.attributes.get("db.system") == "redis" for s in tree), names
    assert len({s.context.trace_id for s in tree}) == 1


async def test_job_span_links_to_the_request_that_enqueued_it(settings: Settings, spans: InMemorySpanExporter) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from tasks.worker import FUNCTIONS

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request_span:
        carrier: dict[str, str] = {}
        inject(carrier)
    engine = create_async_engine(settings.database.url)
    ctx = {"session_factory": async_sessionmaker(engine), "job_try": 1, "job_id": "j-1"}
    job = FUNCTIONS[JobName.CLEANUP_EXPIRED_TOKENS]
    await job(ctx, traceparent=carrier["traceparent"])
    await engine.dispose()
    job_span = next(s for s in spans.get_finished_spans() if s.name.startswith("job "))
    assert job_span.attributes["job.name"] == "cleanup_expired_tokens"
    assert [link.context.trace_id for link in job_span.links] == [request_span.get_span_context().trace_id]


async def test_login_notification_job_carries_the_login_trace(
    client: AsyncTestClient[Any], alice: User, spans: InMemorySpanExporter, settings: Settings
) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    response = await client.post(
        "/api/v1/auth/login",
        json={"username": "alice", "password": DEFAULT_PASSWORD},
        headers={"X-Request-ID": "trace-to-job"},
    )
    assert response.status_code == 200
    root = next(s for s in spans.get_finished_spans() if s.attributes.get("request_id") == "trace-to-job")
    pool = await create_pool(RedisSettings.from_dsn(settings.redis.url))
    try:
        # The job is enqueued by a task the login's commit started (on the app's loop), so it may
        # land a moment after the answer: wait for it, up to five seconds.
        for _ in range(100):
            jobs = [j for j in await pool.queued_jobs() if j.function == "send_login_notification_email"]
            if jobs:
                break
            await asyncio.sleep(0.05)
    finally:
        await pool.aclose()
    (job,) = jobs
    traceparent = job.kwargs["traceparent"]
    assert traceparent.split("-")[1] == format(root.context.trace_id, "032x")
