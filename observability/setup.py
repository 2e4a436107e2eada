"""OpenTelemetry providers for the API and the worker.

One TracerProvider and one MeterProvider per process, with a resource naming the
service, version, environment and instance. Metrics are always readable in
Prometheus format (the API's /metrics, the worker's metrics port); when the standard
OTEL_EXPORTER_OTLP_ENDPOINT is set, traces and metrics are also pushed over OTLP/HTTP
to a collector. Export runs on background threads with bounded queues: a collector
that is down or slow never slows a request.

Sampling: a caller's decision (W3C traceparent) is followed; otherwise every trace is
kept except those of the hot-path spans given to init_telemetry (the API's verify),
kept at their own ratio. OTEL_TRACES_SAMPLER, when set, replaces all of this.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, SamplingResult, TraceIdRatioBased

__all__ = ["Telemetry", "init_telemetry"]

_lock = threading.Lock()
_current: Telemetry | None = None


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    otlp_endpoint: str | None


class HotPathSampler(Sampler):
    """Root sampler: spans named in `ratios` are kept at their ratio, every other span always."""

    def __init__(self, ratios: Mapping[str, float]) -> None:
        self._samplers = {name: TraceIdRatioBased(ratio) for name, ratio in ratios.items()}

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Sequence[Any] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        sampler = self._samplers.get(name, ALWAYS_ON)
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"HotPathSampler{{{', '.join(f'{k}={v.rate}' for k, v in self._samplers.items())}}}"


def init_telemetry(
    *, service_name: str, version: str, environment: str, hot_spans: Mapping[str, float] | None = None
) -> Telemetry:
    """Install the process-wide providers once; later calls return the same ones.

    Args:
        service_name: `service.name` (auth-service-api, auth-service-worker).
        version: `service.version`.
        environment: `deployment.environment`.
        hot_spans: span name -> share of its root traces to keep (the rest: all).
    """
    global _current
    with _lock:
        if _current is not None:
            return _current
        resource = Resource.create(
            {
                "service.name": service_name,
                "service.version": version,
                "deployment.environment": environment,
                "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            }
        )
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
        sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentBased(HotPathSampler(hot_spans or {}))
        tracer_provider = TracerProvider(resource=resource, sampler=sampler)  # None: from OTEL_TRACES_SAMPLER
        readers: list[MetricReader] = [PrometheusMetricReader()]
        if endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=5)))
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(timeout=5), export_interval_millis=15000))
        # No exemplars unless asked for (OTEL_METRICS_EXEMPLAR_FILTER): they halve the cost of a record().
        exemplars = None if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()
        meter_provider = MeterProvider(resource=resource, metric_readers=readers, exemplar_filter=exemplars)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        # Process CPU and memory as OTel metrics, so they travel by OTLP like the rest.
        SystemMetricsInstrumentor(
            config={"process.cpu.time": ["user", "system"], "process.memory.usage": None, "process.thread.count": None}
        ).instrument(meter_provider=meter_provider)
        _current = Telemetry(tracer_provider, meter_provider, endpoint)
        return _current
