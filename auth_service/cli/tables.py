"""What the CLI's listings print: aligned tables, instants, audit events, and `--since`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from auth_service.cli.common import fail, out

__all__ = ["events_table", "parse_since", "table", "when"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows under headers, each column as wide as its widest cell (the last one ragged)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=False)]
        out("  ".join([*cells, line[-1]]).rstrip())


def when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def events_table(events: Sequence[Any], names: dict[str, str]) -> None:
    def actor(event: Any) -> str:
        if event.actor_id is None:
            return str(event.details.get("via", "-"))
        return str(names.get(event.actor_id, event.actor_id))

    def details(event: Any) -> str:
        shown = {k: v for k, v in event.details.items() if k != "via"}
        return msgspec.json.encode(shown).decode() if shown else "-"

    table(
        ["AT", "ACTOR", "ACTION", "TARGET", "DETAILS"],
        [[when(e.at), actor(e), e.action, e.target_id or "-", details(e)] for e in events] or [["-"] * 5],
    )


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """`30m`, `1h`, `7d` (before now) or an ISO 8601 instant (no zone: UTC)."""
    match = _DURATION.match(value.strip())
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        instant = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since: {value!r} is neither a duration (30m, 1h, 7d) nor an ISO 8601 time (2026-12-01T08:00)")
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)
