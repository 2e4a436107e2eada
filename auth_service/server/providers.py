"""The app's dependency providers: each long-lived object of the process (the container's
properties, auth_service/container.py) under its own name, so a domain asks for `hasher` or
`revocation` and gets the process's one. The only code that reads the app's state."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from auth_service.container import RESOURCE_NAMES, Resources
from auth_service.lib.audit import provide_actor
from auth_service.lib.principal import provide_subject
from auth_service.settings import Settings

__all__ = ["app_dependencies"]


def _provider(name: str) -> Provide:
    def provide(state: State) -> object:
        resources: Resources = state.resources
        return getattr(resources, name)

    return Provide(provide, sync_to_thread=False)


def _settings(state: State) -> Settings:
    resources: Resources = state.resources
    return resources.settings


def app_dependencies() -> dict[str, Provide]:
    """Registered on the app: every handler and provider can name these."""
    dependencies = {name: _provider(name) for name in RESOURCE_NAMES}
    dependencies["settings"] = Provide(_settings, sync_to_thread=False)
    dependencies["subject"] = Provide(provide_subject)
    dependencies["actor"] = Provide(provide_actor, sync_to_thread=False)
    return dependencies
