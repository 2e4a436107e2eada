"""Keyset pagination: a cursor that holds the last row's (time, id), so a page is an index
range scan whatever its depth, and rows inserted meanwhile never shift a walk.

Clients treat the cursor as opaque. Its shape is published (CURSOR_PATTERN) and every string of
that shape is a cursor that works (a position past the end gives an empty page), so the API's
document and its answers agree: a string of another shape is 400 VALIDATION_ERROR.
"""

from __future__ import annotations

import datetime as dt
import uuid

from auth_service.lib.errors import InvalidInput

__all__ = ["CURSOR_MAX_LENGTH", "CURSOR_PATTERN", "MAX_LIMIT", "decode_cursor", "encode_cursor"]

MAX_LIMIT = 100
# Microseconds since 1970 (at most 17 digits: year 5138), then the row id's 32 hex digits.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}$(?!\n)"
CURSOR_MAX_LENGTH = 50
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def encode_cursor(at: dt.datetime, row_id: uuid.UUID) -> str:
    micros = (at - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{micros}.{row_id.hex}"


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (time, id) a cursor holds; InvalidInput(`cursor`) for any other string."""
    micros, dot, row_id = cursor.partition(".")
    if not (dot and micros.isascii() and micros.isdigit() and len(micros) <= 17 and len(row_id) == 32):
        raise InvalidInput("cursor", "not a cursor this API returned")
    try:
        return _EPOCH + dt.timedelta(microseconds=int(micros)), uuid.UUID(hex=row_id)
    except ValueError:
        raise InvalidInput("cursor", "not a cursor this API returned") from None
