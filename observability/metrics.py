"""Every instrument, named once, following OTel semantic conventions where one exists.

Instruments come from the global MeterProvider; created before `init_telemetry`, they
forward once it runs. In Prometheus format (dots become underscores, units and
`_total` are appended):

| instrument | Prometheus name | attributes |
|---|---|---|
| http.server.request.duration (s) | http_server_request_duration_seconds_{bucket,count,sum} | http_route, http_request_method, http_response_status_code |
| auth.login.attempts | auth_login_attempts_total | outcome, reason |
| auth.tokens.issued | auth_tokens_issued_total | type |
| auth.token.generation.duration (s) | auth_token_generation_duration_seconds_* | |
| auth.token.validation.duration (s) | auth_token_validation_duration_seconds_* | |
| ratelimit.rejections | ratelimit_rejections_total | endpoint |
| ratelimit.redis.failures | ratelimit_redis_failures_total | endpoint |
| auth.active_users | auth_active_users | |
| db.client.connections.usage | db_client_connections_usage_connections | state (used, idle); from the SQLAlchemy instrumentation |
| redis.memory.used (By) | redis_memory_used_bytes | |
| jobs.queue.length | jobs_queue_length | |
| redis.eviction.risk | redis_eviction_risk | 1 when Redis's maxmemory-policy may evict our keys (anything but noeviction), else 0 |
| db.connection.errors | db_connection_errors_total | source (request, health) |
| jobs.runs | jobs_runs_total | task, outcome |
| audit.events | audit_events_total | action (committed audit events) |
| admin.requests | admin_requests_total | operation, outcome |
| auth.passkey.registrations | auth_passkey_registrations_total | |
| auth.passkey.logins | auth_passkey_logins_total | outcome (success, or why a passwordless login was refused) |
| auth.mfa.challenges | auth_mfa_challenges_total | method (totp, recovery_code, webauthn, enroll), outcome (required, success, failure, invalid_token) |
| auth.mfa.enrolments | auth_mfa_enrolments_total | method (totp, webauthn) |
| auth.oauth.authorizations | auth_oauth_authorizations_total | outcome (code, login, consent, denied, error) |
| auth.oauth.token.grants | auth_oauth_token_grants_total | grant_type (authorization_code, refresh_token, client_credentials, other), outcome (ok, or the OAuth error) |
| auth.oauth.introspections | auth_oauth_introspections_total | outcome (active, inactive, invalid_client) |
| smtp.circuit.state | smtp_circuit_state | (worker) 0 closed, 1 half-open, 2 open |
| jobs.duration (s) | jobs_duration_seconds_* | task |
| process.cpu.time, process.memory.usage | process_cpu_time_seconds_total, process_memory_usage_bytes | type (user, system); from the system-metrics instrumentation |

Counters start at 0 for the label values they are known to take (`start_api_counters` in the
API, `start_job_counters` in the worker, once the MeterProvider is set): a healthy service then
reads 0 on its dashboards rather than "no data", and a first event shows in rate() and increase()
(a series born at 1 has no earlier sample to rise from). Values seen only at run time (the
per-IP limit's route templates) get their series on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Observation

__all__ = [
    "ADMIN_OPERATIONS",
    "ADMIN_OUTCOMES",
    "AUDIT_ACTIONS",
    "DB_ERROR_SOURCES",
    "JOB_OUTCOMES",
    "LIMITED_ENDPOINTS",
    "LOGIN_FAILURE_REASONS",
    "MFA_METHODS",
    "MFA_OUTCOMES",
    "OAUTH_AUTHORIZATION_OUTCOMES",
    "OAUTH_GRANT_OUTCOMES",
    "OAUTH_GRANT_TYPES",
    "OAUTH_INTROSPECTION_OUTCOMES",
    "PASSKEY_LOGIN_OUTCOMES",
    "TOKEN_TYPES",
    "active_users",
    "admin_requests",
    "audit_events",
    "db_connection_errors",
    "gauges",
    "http_request_duration",
    "job_duration",
    "job_runs",
    "login_attempts",
    "mfa_challenges",
    "mfa_enrolments",
    "oauth_authorizations",
    "oauth_introspections",
    "oauth_token_grants",
    "passkey_logins",
    "passkey_registrations",
    "password_changes",
    "password_resets",
    "ratelimit_redis_failures",
    "ratelimit_rejections",
    "record_admin_request",
    "record_audit_event",
    "record_mfa_challenge",
    "record_mfa_enrolment",
    "record_passkey_login",
    "record_passkey_registration",
    "record_password_change",
    "record_password_reset",
    "record_registration",
    "record_session_revoked",
    "record_verification",
    "registrations",
    "session_revocations",
    "start_api_counters",
    "start_at_zero",
    "start_job_counters",
    "token_generation_duration",
    "token_validation_duration",
    "tokens_issued",
    "verifications",
]

_meter = metrics.get_meter("auth_service")

_LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
_FAST_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01]
_JOB_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0]

http_request_duration = _meter.create_histogram(
    "http.server.request.duration",
    unit="s",
    description="Duration of HTTP server requests",
    explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
)
login_attempts = _meter.create_counter("auth.login.attempts", description="Login attempts by outcome and reason")
tokens_issued = _meter.create_counter("auth.tokens.issued", description="Tokens issued by type")
token_generation_duration = _meter.create_histogram(
    "auth.token.generation.duration",
    unit="s",
    description="Time to mint an access token",
    explicit_bucket_boundaries_advisory=_FAST_BUCKETS,
)
token_validation_duration = _meter.create_histogram(
    "auth.token.validation.duration",
    unit="s",
    description="Time to validate an access token (signature, claims, revocation)",
    explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
)
ratelimit_rejections = _meter.create_counter("ratelimit.rejections", description="Requests refused by a rate limit")
ratelimit_redis_failures = _meter.create_counter(
    "ratelimit.redis.failures", description="Rate-limit checks that could not reach Redis"
)
db_connection_errors = _meter.create_counter(
    "db.connection.errors", description="Failures to reach PostgreSQL (requests and health checks)"
)
session_revocations = _meter.create_counter(
    "auth.session.revocations", description="Sessions ended one at a time, by who ended them (self, admin)"
)
password_resets = _meter.create_counter(
    "auth.password.resets", description="Password resets by stage (requested: a link was mailed; completed)"
)
verifications = _meter.create_counter("auth.email.verifications", description="E-mail addresses verified by link")
registrations = _meter.create_counter(
    "auth.registrations", description="Self-registrations by outcome (created; address_taken: the owner was told)"
)
password_changes = _meter.create_counter(
    "auth.password.changes", description="Passwords changed by their owner (current password given)"
)
passkey_registrations = _meter.create_counter(
    "auth.passkey.registrations", description="Passkeys registered by their owner"
)
passkey_logins = _meter.create_counter(
    "auth.passkey.logins", description="Passwordless (passkey) logins by outcome: success or why it was refused"
)
audit_events = _meter.create_counter("audit.events", description="Audit events committed, by action")
admin_requests = _meter.create_counter(
    "admin.requests", description="Admin API requests by operation and outcome (ok, or the refusal's kind)"
)
mfa_challenges = _meter.create_counter(
    "auth.mfa.challenges",
    description="Second steps of logins by method and outcome (required: a challenge was issued; success, "
    "failure: a right or wrong proof; invalid_token: an unknown, used, expired or foreign mfa_token)",
)
mfa_enrolments = _meter.create_counter("auth.mfa.enrolments", description="Second factors enrolled, by method")
oauth_authorizations = _meter.create_counter(
    "auth.oauth.authorizations",
    description="Authorization requests by outcome (code: a code issued; login, consent: a page shown; denied: "
    "the user refused; error: the request was refused)",
)
oauth_token_grants = _meter.create_counter(
    "auth.oauth.token.grants", description="Token endpoint requests by grant type and outcome (ok, or the OAuth error)"
)
oauth_introspections = _meter.create_counter(
    "auth.oauth.introspections", description="Token introspections by outcome (active, inactive, invalid_client)"
)
job_runs = _meter.create_counter("jobs.runs", description="Background job runs by task and outcome")
job_duration = _meter.create_histogram(
    "jobs.duration", unit="s", description="Background job duration", explicit_bucket_boundaries_advisory=_JOB_BUCKETS
)

# The label values the counters take, as auth_service records them (domain/auth/service.py and
# limits.py, server/exception_handlers.py, domain/system/controllers.py).
LOGIN_FAILURE_REASONS = (
    "unknown_user",
    "bad_password",
    "inactive",
    "credentials_changed",
    "busy",
    "email_unverified",
    "mfa_failed",
)
MFA_METHODS = ("totp", "recovery_code", "webauthn", "enroll")
MFA_OUTCOMES = ("required", "success", "failure", "invalid_token")
MFA_ENROLMENT_METHODS = ("totp", "webauthn")
# The endpoints with limits of their own; the per-IP limit of the other routes labels by route template.
LIMITED_ENDPOINTS = ("login", "refresh", "logout", "verify", "email", "mfa")
TOKEN_TYPES = ("access", "refresh")
DB_ERROR_SOURCES = ("request", "health")
JOB_OUTCOMES = ("success", "retry", "failure")
SESSION_REVOKERS = ("self", "admin")
RESET_STAGES = ("requested", "completed")
# domain/auth/passkey_login.py: success, or the refusal's reason (domain/auth/passkeys.py).
PASSKEY_LOGIN_OUTCOMES = ("success", "malformed", "unknown", "invalid", "cloned", "inactive", "expired")


# The OAuth provider's label values (domain/oauth).
OAUTH_AUTHORIZATION_OUTCOMES = ("code", "login", "consent", "denied", "error")
OAUTH_GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", "other")
OAUTH_GRANT_OUTCOMES = (
    "ok",
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "temporarily_unavailable",
)
OAUTH_INTROSPECTION_OUTCOMES = ("active", "inactive", "invalid_client")


# The audit log's actions (DESIGN.md; auth_service/lib/audit.py refuses any other), and the admin
# API's operations and outcomes (domain/admin/controllers.py AdminMetrics).
AUDIT_ACTIONS = (
    "admin.denied",
    "user.create",
    "user.update",
    "user.deactivate",
    "user.activate",
    "user.delete",
    "user.roles",
    "user.logout_all",
    "user.password_reset_sent",
    "user.mfa_reset",
    "password.change",
    "password.reset",
    "email.change",
    "mfa.totp.enable",
    "mfa.totp.disable",
    "mfa.passkey.add",
    "mfa.passkey.remove",
    "mfa.recovery.regenerate",
    "mfa.recovery.use",
    "session.revoke",
    "account.register",
    "account.not_me",
    "key.create",
    "key.rotate",
    "key.retire",
    "client.create",
    "client.update",
    "client.delete",
    "client.secret_rotate",
)
ADMIN_OPERATIONS = (
    "users.list",
    "users.create",
    "users.get",
    "users.update",
    "users.delete",
    "users.logout",
    "users.password_reset",
    "users.mfa_reset",
    "login_records.list",
    "audit_events.list",
    "clients.list",
    "clients.create",
    "clients.get",
    "clients.update",
    "clients.delete",
    "clients.secret_rotate",
)
ADMIN_OUTCOMES = ("ok", "invalid", "unauthenticated", "forbidden", "not_found", "conflict", "limited", "error")


def record_audit_event(action: str) -> None:
    audit_events.add(1, {"action": action})


def record_mfa_challenge(method: str, outcome: str) -> None:
    mfa_challenges.add(1, {"method": method, "outcome": outcome})


def record_mfa_enrolment(method: str) -> None:
    mfa_enrolments.add(1, {"method": method})


def record_admin_request(operation: str, outcome: str) -> None:
    admin_requests.add(1, {"operation": operation, "outcome": outcome})


def record_password_reset(stage: str) -> None:
    password_resets.add(1, {"stage": stage})


def record_verification() -> None:
    verifications.add(1)


REGISTRATION_OUTCOMES = ("created", "address_taken")


def record_registration(outcome: str) -> None:
    registrations.add(1, {"outcome": outcome})


def record_password_change() -> None:
    password_changes.add(1)


def record_session_revoked(by: str, sessions: int = 1) -> None:
    session_revocations.add(sessions, {"by": by})


def record_passkey_registration() -> None:
    passkey_registrations.add(1)


def record_passkey_login(outcome: str) -> None:
    passkey_logins.add(1, {"outcome": outcome})


def start_at_zero(counter: Counter, attribute_sets: Iterable[Mapping[str, str]]) -> None:
    """Export `counter` at 0 for each attribute set (adding 0 changes no count already made)."""
    for attributes in attribute_sets:
        counter.add(0, attributes)


def start_api_counters() -> None:
    """The API's counters at 0 for their known label values."""
    start_at_zero(
        login_attempts,
        [{"outcome": "success", "reason": "none"}]
        + [{"outcome": "failure", "reason": reason} for reason in LOGIN_FAILURE_REASONS],
    )
    start_at_zero(tokens_issued, [{"type": kind} for kind in TOKEN_TYPES])
    start_at_zero(ratelimit_rejections, [{"endpoint": endpoint} for endpoint in LIMITED_ENDPOINTS])
    start_at_zero(ratelimit_redis_failures, [{"endpoint": endpoint} for endpoint in LIMITED_ENDPOINTS])
    start_at_zero(db_connection_errors, [{"source": source} for source in DB_ERROR_SOURCES])
    start_at_zero(session_revocations, [{"by": by} for by in SESSION_REVOKERS])
    start_at_zero(password_resets, [{"stage": stage} for stage in RESET_STAGES])
    start_at_zero(password_changes, [{}])
    start_at_zero(verifications, [{}])
    start_at_zero(registrations, [{"outcome": outcome} for outcome in REGISTRATION_OUTCOMES])
    start_at_zero(audit_events, [{"action": action} for action in AUDIT_ACTIONS])
    start_at_zero(passkey_registrations, [{}])
    start_at_zero(passkey_logins, [{"outcome": outcome} for outcome in PASSKEY_LOGIN_OUTCOMES])
    start_at_zero(mfa_challenges, [{"method": m, "outcome": o} for m in MFA_METHODS for o in MFA_OUTCOMES])
    start_at_zero(mfa_enrolments, [{"method": m} for m in MFA_ENROLMENT_METHODS])
    start_at_zero(oauth_authorizations, [{"outcome": o} for o in OAUTH_AUTHORIZATION_OUTCOMES])
    start_at_zero(
        oauth_token_grants, [{"grant_type": g, "outcome": o} for g in OAUTH_GRANT_TYPES for o in OAUTH_GRANT_OUTCOMES]
    )
    start_at_zero(oauth_introspections, [{"outcome": o} for o in OAUTH_INTROSPECTION_OUTCOMES])
    start_at_zero(
        admin_requests, [{"operation": op, "outcome": outcome} for op in ADMIN_OPERATIONS for outcome in ADMIN_OUTCOMES]
    )


def start_job_counters(tasks: Iterable[str]) -> None:
    """The worker's job runs at 0 for every task and outcome."""
    start_at_zero(job_runs, [{"task": task, "outcome": outcome} for task in tasks for outcome in JOB_OUTCOMES])


class _Gauges:
    """Values for the observable gauges, refreshed by their owners (callbacks must not do I/O)."""

    def __init__(self) -> None:
        self.active_users: int | None = None
        self.redis_memory: int | None = None
        self.queue_length: int | None = None
        self.smtp_circuit: int | None = None
        # Redis's maxmemory-policy, as last read (None: unknown).
        self.redis_eviction_policy: str | None = None

    @property
    def redis_eviction_risk(self) -> int | None:
        policy = self.redis_eviction_policy
        return None if policy is None else int(policy != "noeviction")


gauges = _Gauges()


def _observe(value: Callable[[], int | None]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        current = value()
        return [] if current is None else [Observation(current)]

    return callback


active_users = _meter.create_observable_gauge(
    "auth.active_users",
    callbacks=[_observe(lambda: gauges.active_users)],
    description="Distinct users seen (login or verify) in the last 15 minutes",
)
_meter.create_observable_gauge(
    "redis.memory.used", callbacks=[_observe(lambda: gauges.redis_memory)], unit="By", description="Redis used_memory"
)
_meter.create_observable_gauge(
    "smtp.circuit.state",
    callbacks=[_observe(lambda: gauges.smtp_circuit)],
    description="SMTP circuit breaker: 0 closed, 1 half-open, 2 open",
)
_meter.create_observable_gauge(
    "jobs.queue.length", callbacks=[_observe(lambda: gauges.queue_length)], description="Jobs waiting in the arq queue"
)
_meter.create_observable_gauge(
    "redis.eviction.risk",
    callbacks=[_observe(lambda: gauges.redis_eviction_risk)],
    description="1 when Redis may evict keys (maxmemory-policy other than noeviction): limits weaken",
)
