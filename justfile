# Auth service operations. `just --list` shows every recipe.
# Every recipe installs the locked dependencies first (uv sync), so a fresh clone needs nothing else.

set dotenv-load := false
# Recipe arguments reach commands as "$@" / "$1": one argument each, never re-split or run by the
# shell (`just create-user 'eve$(touch /tmp/x)'` is a username, and a refused one).
set positional-arguments := true

python := ".venv/bin/python"

# List the recipes
default:
    @just --list

# Install the locked dependencies into .venv (fast when already done)
sync:
    @uv sync --frozen --quiet --all-extras

# Write .env with fresh secrets (if absent), migrate, create the first admin; safe to re-run
init *ARGS: sync
    {{python}} -m auth_service init "$@"

# Run the API and the worker together (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set); Ctrl-C stops both
up: init
    {{python}} -m auth_service up

# Like `up`, plus VictoriaMetrics scraping API and worker and vmalert on our rules (Debian's victoria-metrics); prints their URLs
monitor: init
    {{python}} -m auth_service monitor

# The whole stack with Docker: PostgreSQL, Redis, 2 APIs behind nginx, worker, collector, VictoriaMetrics, vmalert, Grafana, Jaeger, mail
stack-up:
    docker compose up -d --build

# Stop the Docker stack
stack-down:
    docker compose down

# Run only the HTTP API (honours HOST, default 127.0.0.1, and PORT, default 8000)
api: init
    {{python}} -m auth_service api

# Run only the background worker (arq)
worker: init
    {{python}} -m auth_service worker

# The optional Celery adapter: a Celery worker running the same jobs (broker: CELERY_BROKER_URL)
celery-worker: init
    JOB_QUEUE_BACKEND=celery .venv/bin/celery -A tasks.celery_app worker --concurrency 4 --loglevel INFO

# The Celery beat schedule (cleanup hourly, daily report 00:05 UTC, outbox every minute)
celery-beat: init
    JOB_QUEUE_BACKEND=celery .venv/bin/celery -A tasks.celery_app beat --loglevel INFO

# Upgrade the database schema to the latest migration (or: just migrate --revision <rev>)
migrate *ARGS: sync
    {{python}} -m auth_service migrate "$@"

# Downgrade the database schema one step (or: just downgrade --revision base); asks first (--yes: do not ask)
downgrade *ARGS: sync
    {{python}} -m auth_service downgrade "$@"

# Add a user: just create-user alice --email alice@example.com [--role admin] [--password-stdin]
create-user +ARGS: sync
    {{python}} -m auth_service create-user "$@"

# Register an OAuth client, printed as JSON with a confidential client's secret (once): just create-client NAME --redirect-uri URI [--public] [--first-party] [--grant G]... [--scope S]...
create-client +ARGS: sync
    {{python}} -m auth_service create-client "$@"

# Every OAuth client as a table (secrets never shown)
list-clients: sync
    {{python}} -m auth_service list-clients

# Disable a user and revoke all of its tokens
deactivate-user USERNAME: sync
    {{python}} -m auth_service deactivate-user "$1"

# Remove a user's second factors (TOTP, passkeys, recovery codes) and end its sessions
reset-mfa USERNAME: sync
    {{python}} -m auth_service reset-mfa "$1"

# Re-enable a deactivated user (its old tokens stay dead)
activate-user USERNAME: sync
    {{python}} -m auth_service activate-user "$1"

# Every user as a table: just list-users [--role R] [--inactive]
list-users *ARGS: sync
    {{python}} -m auth_service list-users "$@"

# One user's details, last logins and last audit events
show-user USERNAME: sync
    {{python}} -m auth_service show-user "$1"

# Replace a user's roles: just set-roles alice admin,support ('' for none); its tokens stop working
set-roles USERNAME ROLES: sync
    {{python}} -m auth_service set-roles "$1" "$2"

# The audit log, newest first: just audit [--since 1h] [--actor NAME] [--action user.roles] [--limit 50]
audit *ARGS: sync
    {{python}} -m auth_service audit "$@"

# Change a user's password (from stdin with --password-stdin, else generated); revokes its tokens
set-password +ARGS: sync
    {{python}} -m auth_service set-password "$@"

# Signing keys: just keys list | just keys rotate [--now] | just keys retire KID | just keys show
keys *ARGS: sync
    {{python}} -m auth_service keys "$@"

# Lint, format check, type check and layer contracts
lint: sync
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    .venv/bin/lint-imports

# Format the code
fmt: sync
    .venv/bin/ruff format .
    .venv/bin/ruff check --fix .

# Lint, build the docs (warnings are errors), then the whole test suite against real PostgreSQL and Redis (unit, integration, e2e); installs the Debian packages it needs
test *ARGS: lint test-deps
    NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet
    {{python}} -m pytest "$@"

# Serve the docs site (docs/, mkdocs.yml) with live reload on http://127.0.0.1:8001
docs: sync
    NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs serve --strict -a 127.0.0.1:8001

# The Debian packages the tests start (nginx; victoria-metrics, which has vmalert): installed when missing (as root), else one line naming them
test-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
    { command -v victoria-metrics && command -v vmalert; } >/dev/null || missing+=(victoria-metrics)
    { command -v node && command -v npm; } >/dev/null || missing+=(nodejs npm)  # openid-client, oidc-provider
    [ ${#missing[@]} -eq 0 ] && exit 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "error: the tests need the Debian packages ${missing[*]}; install them: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing the Debian packages the tests need: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    echo "installed ${missing[*]}" >&2

# Fuzz the API contract longer than CI does (schemathesis on the app's own OpenAPI document): just fuzz [EXAMPLES] [SEED]
fuzz EXAMPLES="500" SEED="20261128": sync
    FUZZ_EXAMPLES={{quote(EXAMPLES)}} FUZZ_SEED={{quote(SEED)}} {{python}} -m pytest tests/security/test_fuzz.py -q -n 0

# The revocation model, longer than CI's 300 steps: a seeded random walk over logins, refreshes, revocations and Redis losses on two instances; just fuzz-state [STEPS] [SEED]
fuzz-state STEPS="3000" SEED="20261202": sync
    FUZZ_STATE_STEPS={{quote(STEPS)}} FUZZ_STATE_SEED={{quote(SEED)}} {{python}} -m pytest tests/security/test_state_machine.py -q -s -n 0

# Soak, not in CI: steady mixed traffic against our own API, sampling RSS, fds, PG and Redis connections; writes bench/results/soak-*.json
soak MINUTES="10" *ARGS: sync
    {{python}} -m bench.soak --spawn --minutes "$@"

# Benchmarks, every figure a ratio against a baseline from the same run (needs wrk; < 10 min): writes bench/results/latest.{json,md}
bench *ARGS: sync
    {{python}} -m bench.run "$@"

# The short benchmark for development (< 60 s): verify, login and the user journeys, one short round each
bench-quick *ARGS: sync
    {{python}} -m bench.run --quick "$@"
