"""structlog setup: JSON lines in production, console on a terminal, PII masked.

Takes plain arguments; knows nothing of the service's settings.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger

__all__ = ["add_trace_ids", "configure_logging", "mask_email", "mask_pii"]

# Keys whose values never reach a log line.
_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|hash", re.IGNORECASE)
_EMAIL_KEYS = {"email", "to", "recipient"}
_USERNAME_KEYS = {"username", "user", "login"}
_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def mask_email(value: str) -> str:
    """`jane@example.com` → `j***@example.com`."""
    return _EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def _mask_name(value: str) -> str:
    return f"{value[:1]}***" if value else value


def _scrub_text(value: str) -> str:
    return _JWT_RE.sub("[token]", mask_email(value))


def mask_pii(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop secrets, mask e-mails and usernames, escape nothing else."""
    for key, value in list(event_dict.items()):
        if key in ("event", "timestamp", "level", "logger", "request_id", "trace_id", "span_id"):
            if key == "event" and isinstance(value, str):
                event_dict[key] = _scrub_text(value)
            continue
        if _SECRET_KEYS.search(key):
            event_dict[key] = "[redacted]"
        elif key in _EMAIL_KEYS and isinstance(value, str):
            event_dict[key] = mask_email(value) if "@" in value else _mask_name(value)
        elif key in _USERNAME_KEYS and isinstance(value, str):
            event_dict[key] = _mask_name(value)
        elif isinstance(value, str):
            event_dict[key] = _scrub_text(value)
    return event_dict


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current span's trace_id and span_id, when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def configure_logging(*, level: str = "INFO", fmt: str = "auto") -> None:
    """Route structlog and stdlib logging through one pipeline.

    Args:
        level: minimum level name.
        fmt: "json", "console", or "auto" (console on a TTY, JSON otherwise).
    """
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_pii,
    ]
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            *shared,
            *([] if use_console else [structlog.processors.format_exc_info]),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log repeats what our own request logging says, with query strings.
    for name in ("uvicorn", "uvicorn.error", "arq"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces each of its plugins at INFO whenever it is imported (seven lines per start).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
