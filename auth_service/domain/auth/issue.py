"""What a login and a refresh hand back: the caller, and the pair of tokens they are issued."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from opentelemetry import trace

from auth_service.lib.crypto.tokens import TokenService
from observability import metrics

__all__ = ["ClientInfo", "IssuedTokens", "issue_pair"]

tracer = trace.get_tracer("auth_service")


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    access_expires_in: int
    refresh_token: str
    refresh_expires_in: int
    user_id: str
    scope: str | None = None  # granted through OAuth


def issue_pair(
    tokens: TokenService,
    user_id: uuid.UUID,
    username: str,
    roles: list[str] | None,
    family_id: uuid.UUID,
    refresh_token: str,
    refresh_expires_in: int,
    amr: list[str] | None = None,
    *,
    client_id: str | None = None,
    scope: str | None = None,
) -> IssuedTokens:
    """An access token (its `amr` says how the session's login was proven: ["pwd"] unless given)
    beside the session's refresh token."""
    started = time.perf_counter()
    with tracer.start_as_current_span("auth.token.issue"):
        access, _ = tokens.issue_access(
            user_id=str(user_id),
            username=username,
            roles=list(roles or []),
            session_id=str(family_id),
            amr=amr,
            client_id=client_id,
            scope=scope,
        )
    metrics.token_generation_duration.record(time.perf_counter() - started)
    metrics.tokens_issued.add(1, {"type": "access"})
    metrics.tokens_issued.add(1, {"type": "refresh"})
    return IssuedTokens(access, tokens.access_ttl, refresh_token, refresh_expires_in, str(user_id), scope)
