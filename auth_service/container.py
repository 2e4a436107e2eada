"""The container: every long-lived object of a process, built from the settings by this one
class, which the API, the worker and the CLI share.

Each object is a cached property, built on first use and closed by `close()` only if it was
built: the API touches nearly all of them at start-up, the worker what its jobs use, a CLI
command only what it needs (`just create-user` builds the hasher and the revocation store, not
the rate limiter or the verify scripts). The API's dependency providers are generated from the
properties (server/providers.py), and the worker's job context is filled from them
(tasks/worker.py): a new long-lived object is one property here and its use.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import cached_property

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from auth_service.domain.auth.deps import Authenticator, AuthPolicy
from auth_service.domain.auth.limits import EndpointLimits
from auth_service.domain.auth.mfa.factors import MfaKit
from auth_service.domain.auth.mfa.pending import PendingLogins, ReplayMarks
from auth_service.domain.auth.suspicious import SuspicionRules
from auth_service.domain.auth.verify import ScriptRunner, TokenVerifier, script_runner
from auth_service.domain.notifications.mailer import CircuitBreaker, ConsoleMailer, FileMailer, Mailer, SmtpMailer
from auth_service.domain.sessions.revocation import RevocationStore
from auth_service.domain.users.policy import PasswordPolicy
from auth_service.lib.crypto.account_links import AccountLinks
from auth_service.lib.crypto.links import LinkSigner
from auth_service.lib.crypto.passwords import PasswordHasher
from auth_service.lib.crypto.tokens import TokenService
from auth_service.lib.jobs import bind_queue, drain
from auth_service.lib.keyring import KeyRing
from auth_service.lib.queue import JobQueue, make_queue
from auth_service.lib.redis.activity import ActivityTracker
from auth_service.lib.redis.lean import LeanRedis
from auth_service.lib.redis.ratelimit import RateLimiter
from auth_service.settings import Settings
from db.config import engine_options, ping_on_checkout
from observability.tracing import instrument_engine

__all__ = ["RESOURCE_NAMES", "Resources"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Resources:
    """The long-lived objects of one process.

    Args:
        settings: the process's settings.
        session_factory: the sessions of an engine someone else owns (the API's, from Advanced
            Alchemy's plugin); None: the container opens its own engine on first use, with
            `pool_size` connections and statements bounded by WORKER_JOB_TIMEOUT (the worker,
            the CLI).
    """

    def __init__(
        self,
        settings: Settings,
        session_factory: Callable[[], AsyncSession] | None = None,
        *,
        pool_size: int = 4,
    ) -> None:
        self.settings = settings
        self._given_sessions = session_factory
        self._pool_size = pool_size

    # ---- PostgreSQL -------------------------------------------------------------------------

    @cached_property
    def engine(self) -> AsyncEngine:
        """The container's own engine (the worker's, the CLI's), as the service role."""
        d = self.settings.database
        engine = create_async_engine(
            d.url,
            **engine_options(
                pool_size=self._pool_size,
                max_overflow=self._pool_size,
                pool_timeout=d.pool_timeout,
                connect_timeout=d.connect_timeout,
                # Jobs (the daily report, cleanups) may scan: their statements get the job's own budget.
                statement_timeout=float(self.settings.jobs.timeout),
            ),
        )
        ping_on_checkout(engine)
        instrument_engine(engine)  # SQL spans, and the pool-usage gauge
        return engine

    @cached_property
    def session_factory(self) -> Callable[[], AsyncSession]:
        """Sessions whose committed jobs go to `queue` (lib/jobs.py)."""
        factory = self._given_sessions or async_sessionmaker(self.engine, expire_on_commit=False)
        bind_queue(factory, self.queue)
        return factory

    # ---- Redis ------------------------------------------------------------------------------

    @cached_property
    def redis(self) -> Redis:
        # A blocking pool: redis-py's default pool opens new connections while holding its lock, so
        # with Redis frozen every caller queued behind one 2 s connect after another (the 10th login
        # waited 20 s). This one connects outside the lock and bounds the wait for a free connection.
        r = self.settings.redis
        pool = BlockingConnectionPool.from_url(
            r.url,
            max_connections=256,
            timeout=r.timeout,
            socket_timeout=r.timeout,
            socket_connect_timeout=r.timeout,
            health_check_interval=30,
        )
        return Redis.from_pool(pool)

    @cached_property
    def _scripts(self) -> tuple[ScriptRunner, LeanRedis | None]:
        return script_runner(self.settings.redis.url, self.redis, timeout=self.settings.redis.timeout)

    @cached_property
    def lean_redis(self) -> LeanRedis | None:
        """The verify hot path's own connection (None when it shares redis-py's, for rediss://)."""
        return self._scripts[1]

    @cached_property
    def activity(self) -> ActivityTracker:
        return ActivityTracker(self.settings.redis.key_prefix)

    @cached_property
    def revocation(self) -> RevocationStore:
        r = self.settings.redis
        return RevocationStore(
            self.redis, self.session_factory, prefix=r.key_prefix, access_ttl=self.settings.tokens.access_ttl
        )

    @cached_property
    def limits(self) -> EndpointLimits:
        s = self.settings
        limiter = RateLimiter(self.redis, prefix=s.redis.key_prefix, enabled=s.limits.enabled, lean=self.lean_redis)
        return EndpointLimits(limiter, s.limits.parsed, self.activity, fail_open=s.limits.fail_open)

    @cached_property
    def mfa(self) -> MfaKit:
        """Second factors: pending logins and replay marks on the limits' Redis connection, and
        the purpose keys of TOTP secrets and recovery codes."""
        s, limiter = self.settings, self.limits.limiter
        prefix = s.redis.key_prefix
        return MfaKit(
            pending=PendingLogins(limiter, prefix=prefix, ttl=s.mfa.token_ttl_seconds, max_attempts=s.mfa.max_attempts),
            replay=ReplayMarks(limiter, prefix=prefix),
            totp_key=s.purpose_keys.key("totp"),
            recovery_key=s.purpose_keys.key("recovery-code"),
            required_roles=sorted(s.mfa.required_role_set),
            issuer=s.mfa.totp_issuer,
        )

    @cached_property
    def queue(self) -> JobQueue:
        """The queue the settings choose (arq or Celery)."""
        s = self.settings
        return make_queue(s.jobs.backend, redis_url=s.redis.queue_url, celery_broker_url=s.redis.celery_broker_url)

    # ---- keys, tokens, passwords ------------------------------------------------------------

    @cached_property
    def hasher(self) -> PasswordHasher:
        p = self.settings.passwords
        return PasswordHasher(
            memory_kib=p.memory_kib,
            time_cost=p.time_cost,
            parallelism=p.parallelism,
            workers=p.workers,
            max_pending=p.queue,
        )

    @cached_property
    def password_policy(self) -> PasswordPolicy:
        """The configured policy: the one the endpoints apply and the API document describes."""
        return PasswordPolicy(self.settings.passwords.min_length, self.settings.passwords.min_score)

    @cached_property
    def keyring(self) -> KeyRing:
        """The managed signing keys (ID tokens; access tokens with JWT_ALGORITHM=ES256 …), held in
        memory; the API reloads them every KEY_REFRESH_SECONDS."""
        s = self.settings
        return KeyRing(
            self.session_factory,
            s.purpose_keys.key("signing-key-wrap"),
            algorithm=s.keys.signing_algorithm,
            rotation_delay=s.keys.rotation_delay_seconds,
            # A retired key stays published while a token it signed may be alive (access and ID
            # tokens live as long), plus a minute of clock skew.
            retire_after=s.tokens.access_ttl + 60,
            refresh_seconds=s.keys.refresh_seconds,
        )

    @cached_property
    def tokens(self) -> TokenService:
        t = self.settings.tokens
        return TokenService(
            algorithm=t.algorithm,
            secret=t.secret,
            private_key_file=t.private_key_file,
            public_key_file=t.public_key_file,
            key_id=t.key_id,
            issuer=t.issuer,
            audience=t.audience,
            access_ttl=t.access_ttl,
            successor_key=self.settings.purpose_keys.key("refresh-successor"),
            managed_keys=self.keyring if t.managed else None,
        )

    @cached_property
    def links(self) -> LinkSigner:
        """ "This wasn't me" links."""
        hours = self.settings.links.not_me_link_ttl_hours
        return LinkSigner(self.settings.purpose_keys.key("not-me-link"), hours * 3600)

    @cached_property
    def account_links(self) -> AccountLinks:
        """Reset, verification and invitation links."""
        return AccountLinks(self.settings.purpose_keys.key("account-link"))

    # ---- requests ---------------------------------------------------------------------------

    @cached_property
    def trusted_proxies(self) -> list[Network]:
        """Parsed once: the client-IP rule runs on every limited request."""
        return self.settings.app.trusted_proxy_networks

    @cached_property
    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.tokens, self.revocation, self.limits, self.activity, self._scripts[0])

    @cached_property
    def authenticator(self) -> Authenticator:
        return Authenticator(self.verifier, self.limits, self.trusted_proxies, self.mfa.pending)

    @cached_property
    def auth_policy(self) -> AuthPolicy:
        a = self.settings.accounts
        return AuthPolicy(
            refresh_ttl=self.settings.tokens.refresh_ttl,
            reuse_grace=self.settings.tokens.reuse_grace,
            suspicion=SuspicionRules(
                new_device_days=a.suspicious_new_device_days,
                failures=a.suspicious_failures,
                failure_window_minutes=a.suspicious_failure_window_minutes,
            ),
            require_verified_email=a.require_verified_email,
        )

    # ---- the worker -------------------------------------------------------------------------

    @cached_property
    def mailer(self) -> Mailer:
        """The EMAIL_BACKEND, with SMTP behind the circuit breaker."""
        mail = self.settings.mail
        if mail.backend == "smtp":
            smtp = SmtpMailer(
                host=mail.smtp_host,
                port=mail.smtp_port,
                username=mail.smtp_username,
                password=mail.smtp_password,
                starttls=mail.smtp_starttls,
                tls=mail.smtp_tls,
                timeout=mail.smtp_timeout,
            )
            return CircuitBreaker(smtp, failures=mail.breaker_failures, reset_seconds=mail.breaker_reset_seconds)
        if mail.backend == "console":
            return ConsoleMailer()
        return FileMailer(mail.outbox_dir)

    def build(self, *names: str) -> Resources:
        """Build these now (the API's start-up: no request pays for a first use)."""
        for name in names:
            getattr(self, name)
        return self

    def built(self, name: str) -> bool:
        return name in self.__dict__

    async def close(self) -> None:
        """Close what was built (in the reverse order of what depends on what)."""
        if self.built("revocation"):
            await self.revocation.close()
        if self.built("hasher"):
            self.hasher.close()
        if self.built("queue"):
            await drain()  # the enqueues started by the last commits
            await self.queue.close()
        if self.built("redis"):
            await self.redis.aclose()
        if self.built("_scripts") and self.lean_redis is not None:
            await self.lean_redis.aclose()
        if self.built("engine"):
            await self.engine.dispose()


# The objects domains and handlers can ask for by name (server/providers.py makes them
# dependencies; tasks/worker.py puts those the jobs use in their context).
RESOURCE_NAMES = tuple(
    name for name, value in vars(Resources).items() if isinstance(value, cached_property) and not name.startswith("_")
)
