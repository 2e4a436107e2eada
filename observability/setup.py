"""OpenTelemetry providers for the API and the worker.

One TracerProvider and one MeterProvider per process, with a resource naming the
service, version, environment and instance. Metrics are always readable in
Prometheus format (the API's /metrics, the worker's metrics port); when the standard
OTEL_EXPORTER_OTLP_ENDPOINT is set, traces and metrics are also pushed over OTLP/HTTP
to a collector. Export runs on background threads with bounded queues: a collector
that is down or slow never slows a request.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["Telemetry", "init_telemetry"]

_lock = threading.Lock()
_current: Telemetry | None = None


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    otlp_endpoint: str | None


def init_telemetry(*, service_name: str, version: str, environment: str) -> Telemetry:
    """Install the process-wide providers once; later calls return the same ones.

    Args:
        service_name: `service.name` (auth-service-api, auth-service-worker).
        version: `service.version`.
        environment: `deployment.environment`.
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
        tracer_provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
        readers: list[MetricReader] = [PrometheusMetricReader()]
        if endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=5)))
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(timeout=5), export_interval_millis=15000))
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        # Process CPU and memory as OTel metrics, so they travel by OTLP like the rest.
        SystemMetricsInstrumentor(
            config={"process.cpu.time": ["user", "system"], "process.memory.usage": None, "process.thread.count": None}
        ).instrument(meter_provider=meter_provider)
        _current = Telemetry(tracer_provider, meter_provider, endpoint)
        return _current
