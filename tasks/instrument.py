"""Every job runs inside a span and is counted: runs by task and outcome, and duration.

A job enqueued by a request may carry `traceparent`; its span is then linked to the
request's trace.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry
from opentelemetry import trace
from opentelemetry.propagate import extract

from observability import metrics

__all__ = ["instrumented"]

tracer = trace.get_tracer("tasks")
Job = Callable[..., Awaitable[Any]]


def instrumented(job: Job) -> Job:
    name = job.__name__

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, traceparent: str | None = None, **kwargs: Any) -> Any:
        links = []
        if traceparent:
            parent = trace.get_current_span(extract({"traceparent": traceparent})).get_span_context()
            if parent.is_valid:
                links.append(trace.Link(parent))
        started = time.perf_counter()
        outcome = "success"
        attributes: dict[str, str | int] = {
            "job.name": name,
            "job.try": int(ctx.get("job_try", 1)),
            "job.id": str(ctx.get("job_id", "")),
        }
        with tracer.start_as_current_span(f"job {name}", links=links, attributes=attributes):
            try:
                return await job(ctx, *args, **kwargs)
            except Retry:
                outcome = "retry"
                raise
            except Exception:
                outcome = "failure"
                raise
            finally:
                metrics.job_runs.add(1, {"task": name, "outcome": outcome})
                metrics.job_duration.record(time.perf_counter() - started, {"task": name})

    return run
