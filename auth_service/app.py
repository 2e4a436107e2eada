"""create_app(): assembles settings, plugins, controllers, DI, telemetry and the error envelope."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import structlog
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar
from litestar.types import Receive, Scope, Send
from sqlalchemy import event

from auth_service.cli.plugin import AuthServiceCLI
from auth_service.container import RESOURCE_NAMES, Resources
from auth_service.domain.account.controllers import AccountController
from auth_service.domain.account.mfa_controllers import MfaController
from auth_service.domain.account.pages import ResetPasswordPage, VerifyEmailPage
from auth_service.domain.account.passkey_controllers import PasskeyController
from auth_service.domain.account.passkey_page import PasskeysPage, static_assets_router
from auth_service.domain.admin.clients import AdminClientsController
from auth_service.domain.admin.controllers import AdminController, AdminMetrics
from auth_service.domain.auth.controllers import VERIFY_PATH, AuthController
from auth_service.domain.auth.passkey_controllers import PasskeyLoginController
from auth_service.domain.oauth.browser import LoginPage
from auth_service.domain.oauth.controllers import OAuthController
from auth_service.domain.oauth.well_known import DOCUMENT_PATHS, WellKnownController
from auth_service.domain.sessions.pages import NotMeController
from auth_service.domain.system.controllers import HealthController, metrics_endpoint
from auth_service.domain.system.gauges import poll_gauges
from auth_service.domain.users.repository import UserRepository
from auth_service.lib.http import StrictJSONRequest
from auth_service.lib.principal import AUTHENTICATOR_STATE_KEY, DENIALS_STATE_KEY
from auth_service.server.authentication import AuthenticationMiddleware
from auth_service.server.denials import Denials
from auth_service.server.dispatch import FastDocuments, FastVerify
from auth_service.server.exception_handlers import exception_handlers
from auth_service.server.hardening import cors_config, response_hardening
from auth_service.server.openapi import (
    docs_assets_router,
    document_one_of_bodies,
    document_password_policy,
    mark_optional_bodies,
    openapi_config,
)
from auth_service.server.providers import app_dependencies
from auth_service.server.public_limit import PublicLimitMiddleware
from auth_service.server.request_context import RequestContextMiddleware, add_response_headers
from auth_service.settings import Settings, get_settings
from db.config import engine_options, ping_on_checkout
from observability.logging import configure_logging
from observability.metrics import start_api_counters
from observability.setup import init_telemetry
from observability.tracing import instrument_engine, instrument_redis

__all__ = ["AuthApp", "create_app"]

log = structlog.get_logger()


def sqlalchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    config = SQLAlchemyAsyncConfig(
        connection_string=settings.database.url,
        engine_config=EngineConfig(
            **engine_options(
                pool_size=settings.database.pool_size,
                max_overflow=settings.database.max_overflow,
                pool_timeout=settings.database.pool_timeout,
                connect_timeout=settings.database.connect_timeout,
                statement_timeout=settings.database.statement_timeout,
            )
        ),
        session_config=AsyncSessionConfig(expire_on_commit=False),
        create_all=False,
    )
    _drop_cache_listener(config)
    return config


def _drop_cache_listener(config: SQLAlchemyAsyncConfig) -> None:
    """Advanced Alchemy hangs a cache-invalidation listener on every session's commit and
    rollback. We use none of its caching, and the listener's is-enabled check calls
    `Engine.execution_options()`, which builds two engine copies per commit: 5 % of a login's
    event-loop CPU in a py-spy profile. Its other listeners (updated_at) stay."""
    from advanced_alchemy._listeners import AsyncCacheListener

    sync_maker = config.create_session_maker().kw.get("sync_session_class")  # type: ignore[attr-defined]
    if sync_maker is None:
        return
    for name, listener in (
        ("after_commit", AsyncCacheListener.after_commit),
        ("after_rollback", AsyncCacheListener.after_rollback),
    ):
        if event.contains(sync_maker, name, listener):
            event.remove(sync_maker, name, listener)


async def _calibrate_failure_floor(resources: Resources) -> None:
    """Time a check of every kind of hash the users table holds, so a failed login against a
    legacy hash costs what any other failure costs from the first request on (passwords.py)."""
    try:
        async with asyncio.timeout(10), resources.session_factory() as session:
            kinds = await UserRepository(session=session).hash_kinds()
        await asyncio.wait_for(resources.hasher.calibrate(kinds), 10)
    except Exception as exc:  # a database down at start-up: the floor learns from real checks instead
        log.warning("passwords.calibration_skipped", error=type(exc).__name__)


async def _load_signing_keys(resources: Resources) -> None:
    """The managed keys into memory, and a first one if none may sign (an install that has not
    run `just init` since keys were managed). A database down at start-up: the refresh task
    loads them once it answers."""
    try:
        async with asyncio.timeout(10):
            await resources.keyring.load()
            if resources.keyring.signer() is None and await resources.keyring.ensure():
                log.info("signing_key.first_created")
    except Exception as exc:
        log.warning("signing_keys.load_skipped", error=type(exc).__name__)


class AuthApp(Litestar):
    """Litestar, with GET /verify answered by its fast path before the router (server/dispatch.py)."""

    fast_verify: FastVerify | None = None
    fast_documents: FastDocuments | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        for fast in (self.fast_verify, self.fast_documents):
            if fast is not None and fast.takes(scope):
                scope["app"] = scope["litestar_app"] = self
                scope.setdefault("state", {})
                await fast(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> AuthApp:
    """Build the ASGI app. Settings are read from the environment unless given."""
    settings = settings or get_settings()
    configure_logging(level=settings.telemetry.log_level, fmt=settings.telemetry.log_format)
    init_telemetry(
        service_name="auth-service-api",
        version=version("auth-service"),
        environment=settings.app.env,
        # The hot paths' traces are sampled: verify, and the documents resource servers fetch.
        hot_spans={
            f"GET {path}": settings.telemetry.trace_verify_sample_ratio
            for path in (VERIFY_PATH, *sorted(DOCUMENT_PATHS))
        },
    )
    start_api_counters()  # dashboards read 0, not "no data", before the first login or failure
    instrument_redis()
    db_config = sqlalchemy_config(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        resources = Resources(settings, db_config.create_session_maker())
        resources.build(*(name for name in RESOURCE_NAMES if name not in ("engine", "mailer")))
        app.state.resources = resources
        setattr(app.state, AUTHENTICATOR_STATE_KEY, resources.authenticator)  # for guards (lib/principal.py)
        setattr(app.state, DENIALS_STATE_KEY, Denials(resources.session_factory, resources.authenticator))
        engine = db_config.get_engine()
        ping_on_checkout(engine)
        instrument_engine(engine)  # SQL spans, and the pool-usage gauge
        # Side by side: with the database away, start-up waits for one timeout, not two.
        await asyncio.gather(_calibrate_failure_floor(resources), _load_signing_keys(resources))
        stop_polling = asyncio.Event()
        poller = asyncio.create_task(poll_gauges(resources.redis, resources.activity, stop_polling))
        key_refresh = asyncio.create_task(resources.keyring.run(stop_polling))
        # Everything allocated so far lives for the whole process: keep it out of GC scans (p99).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            stop_polling.set()
            try:
                await asyncio.wait_for(asyncio.gather(poller, key_refresh), timeout=5)
            except TimeoutError:
                log.warning("gauges.poller_stuck_at_shutdown")
            await resources.close()
            # Advanced Alchemy disposes only the engine it put in the app state; this one too.
            await engine.dispose()

    route_handlers: list[object] = [
        AuthController,
        AccountController,
        PasskeyController,
        PasskeyLoginController,
        MfaController,
        AdminController,
        AdminClientsController,
        NotMeController,
        ResetPasswordPage,
        VerifyEmailPage,
        PasskeysPage,
        static_assets_router(),
        HealthController,
        metrics_endpoint,
        WellKnownController,
        OAuthController,
        LoginPage,
    ]
    if settings.pages.docs_enabled:
        route_handlers.append(docs_assets_router())
    before_send = [add_response_headers, response_hardening(settings)]
    cors = cors_config(settings)
    app = AuthApp(
        route_handlers=route_handlers,  # type: ignore[arg-type]
        plugins=[SQLAlchemyPlugin(config=db_config), AuthServiceCLI()],
        lifespan=[lifespan],
        # Request id, server span (W3C traceparent), HTTP metrics; then the per-IP limit of every
        # handler that has none of its own (a middleware: a handler's before_request cannot replace it);
        # then the admin API's request counter (outside the authentication, so a 401 counts);
        # then the authentication of every route whose opt says `auth`, into its one Subject.
        middleware=[RequestContextMiddleware, PublicLimitMiddleware, AdminMetrics, AuthenticationMiddleware],
        dependencies=app_dependencies(),
        request_class=StrictJSONRequest,  # JSON bodies decoded strictly: `0` is not a boolean
        before_send=before_send,
        exception_handlers=exception_handlers,
        openapi_config=openapi_config() if settings.pages.docs_enabled else None,
        cors_config=cors,
        request_max_body_size=settings.app.max_body_size,
        logging_config=None,
        debug=False,
    )
    app.fast_verify = FastVerify(app, before_send, path=VERIFY_PATH, cors=cors is not None)
    app.fast_documents = FastDocuments(app, before_send, cors=cors is not None)
    if settings.pages.docs_enabled:
        mark_optional_bodies(app)
        document_one_of_bodies(app)
        document_password_policy(app, Resources(settings).password_policy)
    return app
