"""The shared parts the API and the worker both build from settings (so the worker never
imports the API's composition root)."""

from __future__ import annotations

from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.crypto.tokens import TokenService
from auth_service.lib.queue import JobQueue, make_queue
from auth_service.settings import Settings

__all__ = ["account_links_for", "job_queue_for", "link_signer_for", "password_hasher_for", "token_service_for"]


def job_queue_for(settings: Settings) -> JobQueue:
    """The queue the settings choose (arq or Celery); the API and the worker share this."""
    return make_queue(
        settings.jobs.backend,
        redis_url=settings.redis.queue_url,
        celery_broker_url=settings.redis.celery_broker_url,
    )


def account_links_for(settings: Settings) -> AccountLinks:
    return AccountLinks(settings.purpose_keys.key("account-link"))


def link_signer_for(settings: Settings) -> LinkSigner:
    return LinkSigner(settings.purpose_keys.key("not-me-link"), settings.links.not_me_link_ttl_hours * 3600)


def password_hasher_for(settings: Settings) -> PasswordHasher:
    p = settings.passwords
    return PasswordHasher(
        memory_kib=p.memory_kib,
        time_cost=p.time_cost,
        parallelism=p.parallelism,
        workers=p.workers,
        max_pending=p.queue,
    )


def token_service_for(settings: Settings) -> TokenService:
    t = settings.tokens
    return TokenService(
        algorithm=t.algorithm,
        secret=t.secret,
        private_key_file=t.private_key_file,
        public_key_file=t.public_key_file,
        key_id=t.key_id,
        issuer=t.issuer,
        audience=t.audience,
        access_ttl=t.access_ttl,
        successor_key=settings.purpose_keys.key("refresh-successor"),
    )
