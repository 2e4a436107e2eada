"""The shared parts the API and the worker both build from settings (so the worker never
imports the API's composition root)."""

from __future__ import annotations

from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.queue import JobQueue, make_queue
from auth_service.settings import Settings

__all__ = ["job_queue_for", "link_signer_for", "password_hasher_for"]


def job_queue_for(settings: Settings) -> JobQueue:
    """The queue the settings choose (arq or Celery); the API and the worker share this."""
    return make_queue(
        settings.job_queue_backend, redis_url=settings.job_redis_url, celery_broker_url=settings.celery_broker_url
    )


def link_signer_for(settings: Settings) -> LinkSigner:
    return LinkSigner(settings.signing_material, settings.not_me_link_ttl_hours * 3600)


def password_hasher_for(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        memory_kib=settings.argon2_memory_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
        workers=settings.hash_workers,
        max_pending=settings.password_hash_queue,
    )
