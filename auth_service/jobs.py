"""The one way the API hands work to the worker: jobs by name, never by import."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["JobName"]


class JobName(StrEnum):
    """Every job the worker knows; a unit test checks each is registered with it."""

    CLEANUP_EXPIRED_TOKENS = "cleanup_expired_tokens"
