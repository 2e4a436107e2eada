"""What every job function gets (all domains' jobs, through the lowest domain): the worker's
context, arq's or the Celery adapter's, typed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from auth_service.domain.notifications.mailer import Mailer
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.queue import JobQueue
from auth_service.settings import Settings

__all__ = ["JobContext"]


class JobContext(TypedDict, total=False):
    """Filled once per worker by tasks/worker.py's `prepare`, from the container (each key is one
    of its objects, by the same name); arq adds its own keys per job."""

    resources: Any  # the container itself (auth_service/container.py, above the domains)

    settings: Settings
    engine: AsyncEngine
    session_factory: Callable[[], AsyncSession]
    mailer: Mailer
    links: LinkSigner
    account_links: AccountLinks
    queue: JobQueue
    # arq's, per job
    job_id: str
    job_try: int
    redis: Any
