"""The container (auth_service/container.py): one class builds every long-lived object from the
settings, on first use; the API's providers and the worker's job context come from it."""

from __future__ import annotations

from auth_service.container import RESOURCE_NAMES, Resources
from auth_service.domain.notifications.context import JobContext
from auth_service.server.providers import app_dependencies
from auth_service.settings import load_settings

ENV = {
    "DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "JWT_SECRET_KEY": "k" * 40,
}


def test_a_command_builds_only_what_it_uses() -> None:
    resources = Resources(load_settings(env=ENV, env_file=None))
    assert not any(resources.built(name) for name in RESOURCE_NAMES)
    assert resources.account_links.token.__self__ is resources.account_links  # built on first use…
    assert [name for name in RESOURCE_NAMES if resources.built(name)] == ["account_links"]  # …alone
    assert resources.account_links is resources.account_links  # once


def test_every_resource_is_a_dependency_and_the_jobs_context_names_only_resources() -> None:
    dependencies = app_dependencies()
    assert set(RESOURCE_NAMES) <= set(dependencies)
    assert {"hasher", "revocation", "limits", "queue", "account_links", "password_policy"} <= set(RESOURCE_NAMES)
    job_keys = set(JobContext.__annotations__) - {"job_id", "job_try", "redis", "resources"}
    assert job_keys <= {*RESOURCE_NAMES, "settings"}
