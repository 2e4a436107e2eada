"""What the commands print: a line of output, or an error line (and the exit)."""

from __future__ import annotations

import sys

__all__ = ["err", "fail", "out"]


def out(message: str) -> None:
    print(message, flush=True)


def err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> None:
    err(message)
    raise SystemExit(code)
