"""Library instrumentation for spans around SQL and Redis, installed once per process/engine."""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_instrumentation_version
from opentelemetry.semconv.metrics import MetricInstruments

__all__ = ["instrument_engine", "instrument_redis"]

_lock = threading.Lock()
_engines: set[int] = set()
_pool_usage: Any = None


def instrument_redis() -> None:
    """Spans for every Redis command and pipeline (redis-py, sync and asyncio)."""
    with _lock:
        instrumentor = RedisInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def instrument_engine(engine: Any) -> None:
    """Spans for every SQL statement of this engine, and the pool-usage gauge.

    The SQLAlchemy instrumentor's own `instrument(engine=…)` works for the first engine
    of a process only (instrumentors are singletons), so each engine gets its own
    EngineTracer, the object that call would have built.
    """
    global _pool_usage
    sync_engine = getattr(engine, "sync_engine", engine)
    with _lock:
        if id(sync_engine) in _engines:
            return
        _engines.add(id(sync_engine))
        name = "opentelemetry.instrumentation.sqlalchemy"
        if _pool_usage is None:
            _pool_usage = metrics.get_meter(name, sqlalchemy_instrumentation_version).create_up_down_counter(
                name=MetricInstruments.DB_CLIENT_CONNECTIONS_USAGE,
                unit="connections",
                description="The number of connections that are currently in state described by the state attribute.",
            )
        EngineTracer(trace.get_tracer(name, sqlalchemy_instrumentation_version), sync_engine, _pool_usage)  # type: ignore[no-untyped-call]
