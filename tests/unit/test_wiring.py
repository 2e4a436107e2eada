from __future__ import annotations

import json
import logging

import pytest
import structlog

from auth_service.server.request_context import request_id_of
from observability.logging import configure_logging, mask_email


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        (b"abc-123_X.y", True),
        (b"a" * 128, True),
        (b"a" * 129, False),
        (b"bad id", False),
        (b"<x>", False),
        (b"", False),
    ],
)
def test_request_id_is_taken_only_when_well_formed(incoming: bytes, kept: bool) -> None:
    scope = {"headers": [(b"x-request-id", incoming)]}
    request_id = request_id_of(scope)
    assert (request_id == incoming.decode()) is kept
    assert request_id_of(scope) == request_id  # stable within a request


def test_email_masking() -> None:
    assert mask_email("jane.doe@example.com") == "j***@example.com"


def test_logs_are_json_and_never_carry_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", fmt="json")
    structlog.contextvars.bind_contextvars(request_id="rid-1")
    structlog.get_logger().info(
        "user.created",
        password="hunter2hunter2",
        refresh_token="abc",
        authorization="Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        email="jane.doe@example.com",
        username="janedoe",
        note="token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl leaked",
    )
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers[0].flush()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["request_id"] == "rid-1"
    assert record["event"] == "user.created"
    for secret in ("hunter2hunter2", "abc", "eyJhbGciOiJIUzI1NiJ9", "jane.doe", "janedoe"):
        assert secret not in line
    assert record["email"] == "j***@example.com"
