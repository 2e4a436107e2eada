"""E-mail delivery backends and the circuit breaker around SMTP.

Backends by EMAIL_BACKEND: `smtp` (aiosmtplib, STARTTLS or implicit TLS, optional
auth), `file` (an .eml per message in EMAIL_OUTBOX_DIR; the embedded default) and
`console` (the log). Failures are sorted into transient (retry later) and permanent
(give up): the jobs decide what to do with each.
"""

from __future__ import annotations

import enum
import os
import tempfile
import time
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog

from observability.metrics import gauges

__all__ = [
    "CircuitBreaker",
    "ConsoleMailer",
    "FileMailer",
    "Mailer",
    "PermanentMailError",
    "SmtpMailer",
    "TransientMailError",
    "one_mailbox",
]

log = structlog.get_logger()


class TransientMailError(Exception):
    """The server is down, busy or slow; try again later."""


class PermanentMailError(Exception):
    """The message can never be delivered (address refused, message rejected)."""


def one_mailbox(address: str) -> str | None:
    """`address` when it is exactly one bare addr-spec, else None.

    The SMTP envelope is what the To header parses into (aiosmtplib reads it with getaddresses),
    so a value that parses into several addresses (`a@b.c,d@e.f`), a display name, a group or
    anything but itself would reach mailboxes nobody checked. Both parsers of the standard
    library must read it as itself: getaddresses (the envelope) and the header registry (the To
    header the message carries)."""
    if getaddresses([address]) != [("", address)] or address.count("@") != 1:
        return None
    message = EmailMessage()
    try:
        message["To"] = address
        parsed = message["To"].addresses
    except (ValueError, TypeError, IndexError):  # a line break, or nothing the parser can read
        return None
    if len(parsed) != 1 or parsed[0].display_name or parsed[0].addr_spec != address:
        return None
    return address


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        tls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._options = {
            "hostname": host,
            "port": port,
            "username": username or None,
            "password": password or None,
            "start_tls": starttls if not tls else False,
            "use_tls": tls,
            "timeout": timeout,
        }

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(message, **self._options)  # type: ignore[arg-type]
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [response.code for response in exc.recipients]
            if all(400 <= code < 500 for code in codes):
                raise TransientMailError(f"recipients deferred: {codes}") from exc
            raise PermanentMailError(f"recipients refused: {codes}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise TransientMailError(f"SMTP {exc.code}") from exc
            raise PermanentMailError(f"SMTP {exc.code}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientMailError(type(exc).__name__) from exc


class FileMailer:
    """Writes each message as an .eml file (atomically), named after its Message-ID."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    async def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = "".join(c for c in str(message["Message-ID"] or time.time_ns()) if c.isalnum() or c in "-.")
        target = self.folder / f"{stem}.eml"
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(message.as_bytes())
        os.replace(temporary, target)
        log.info("email.written", path=str(target))


class ConsoleMailer:
    async def send(self, message: EmailMessage) -> None:
        part = message.get_body(("plain",))
        text = part.get_content() if part is not None else ""
        log.info("email.console", subject=message["Subject"], to=message["To"], body=text)


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Stops hammering a failing SMTP server.

    After `failures` transient failures in a row the circuit opens: sends fail at once
    (TransientMailError, so jobs retry later) for `reset_seconds`; then one probe is let
    through (half-open); its success closes the circuit, its failure opens it again.
    State changes are logged and exported as the `smtp.circuit.state` gauge.
    """

    def __init__(self, mailer: Mailer, *, failures: int = 5, reset_seconds: float = 30.0) -> None:
        self._mailer = mailer
        self._threshold = failures
        self._reset = reset_seconds
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.state = BreakerState.CLOSED
        gauges.smtp_circuit = int(self.state)

    def _set(self, state: BreakerState) -> None:
        if state != self.state:
            log.warning("email.circuit_state", state=state.name.lower(), failures=self._failures)
            self.state = state
            gauges.smtp_circuit = int(state)

    async def send(self, message: EmailMessage) -> None:
        if self.state == BreakerState.OPEN:
            if time.monotonic() - self._opened_at < self._reset or self._probing:
                raise TransientMailError("circuit open: SMTP failing, not trying for now")
            self._set(BreakerState.HALF_OPEN)
        if self.state == BreakerState.HALF_OPEN:
            if self._probing:
                raise TransientMailError("circuit half-open: a probe is in flight")
            self._probing = True
        try:
            await self._mailer.send(message)
        except TransientMailError:
            self._failures += 1
            if self.state == BreakerState.HALF_OPEN or self._failures >= self._threshold:
                self._opened_at = time.monotonic()
                self._set(BreakerState.OPEN)
            raise
        finally:
            self._probing = False
        self._failures = 0
        self._set(BreakerState.CLOSED)
