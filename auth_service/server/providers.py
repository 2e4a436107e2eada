"""The app's dependency providers: each long-lived object of the process (server/resources.py)
under the name domains ask for it by. The only code that reads the app's state."""

from __future__ import annotations

from collections.abc import Callable

from litestar.datastructures import State
from litestar.di import Provide
from redis.asyncio import Redis

from auth_service.domain.auth.deps import Authenticator, AuthPolicy, provide_claims
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.lib.audit import provide_actor
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.crypto.tokens import TokenService
from auth_service.lib.principal import provide_current_user
from auth_service.lib.queue import JobQueue
from auth_service.server.resources import Resources
from auth_service.settings import Settings

__all__ = ["app_dependencies"]


def _resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


def _settings(state: State) -> Settings:
    return _resources(state).settings


def _redis(state: State) -> Redis:
    return _resources(state).redis


def _hasher(state: State) -> PasswordHasher:
    return _resources(state).hasher


def _tokens(state: State) -> TokenService:
    return _resources(state).tokens


def _revocation(state: State) -> RevocationStore:
    return _resources(state).revocation


def _limits(state: State) -> EndpointLimits:
    return _resources(state).limits


def _queue(state: State) -> JobQueue:
    return _resources(state).queue


def _links(state: State) -> LinkSigner:
    return _resources(state).links


def _account_links(state: State) -> AccountLinks:
    links = _resources(state).account_links
    assert links is not None  # build_resources sets it
    return links


def _password_policy(state: State) -> PasswordPolicy:
    return _resources(state).password_policy


def _authenticator(state: State) -> Authenticator:
    return _resources(state).authenticator


def _auth_policy(state: State) -> AuthPolicy:
    return _resources(state).auth_policy


def app_dependencies() -> dict[str, Provide]:
    """Registered on the app: every handler and provider can name these."""
    plain: dict[str, Callable[..., object]] = {
        "settings": _settings,
        "redis": _redis,
        "hasher": _hasher,
        "tokens": _tokens,
        "revocation": _revocation,
        "limits": _limits,
        "queue": _queue,
        "links": _links,
        "account_links": _account_links,
        "password_policy": _password_policy,
        "authenticator": _authenticator,
        "auth_policy": _auth_policy,
        "current_user": provide_current_user,
        "actor": provide_actor,
    }
    dependencies = {name: Provide(provider, sync_to_thread=False) for name, provider in plain.items()}
    dependencies["claims"] = Provide(provide_claims)
    return dependencies
