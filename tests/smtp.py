"""A real SMTP server for tests (aiosmtpd), recording what it accepted."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port


class RecordingHandler:
    """Accepts messages; `refuse` answers 451 to the next N deliveries, `stall` sleeps first,
    `hold` keeps every delivery waiting while it is set, then refuses it (451)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse = 0
        self.stall_seconds = 0.0
        self.attempts = 0
        self.hold = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        self.attempts += 1
        if self.hold:
            while self.hold:
                await asyncio.sleep(0.05)
            return "451 4.3.0 held on purpose; not accepted"
        if self.stall_seconds:
            stall, self.stall_seconds = self.stall_seconds, 0.0
            await asyncio.sleep(stall)
            return "451 4.3.0 stalled on purpose; not accepted"
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 30) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.messages


@contextmanager
def smtp_server() -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def body_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            return payload.decode() if isinstance(payload, bytes) else str(payload)
    return ""


def body_html(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            return payload.decode() if isinstance(payload, bytes) else str(payload)
    return ""
