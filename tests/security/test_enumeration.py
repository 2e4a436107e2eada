"""Account enumeration: unknown user, wrong password and disabled account must be
indistinguishable from outside — same status, body and headers, and the same time.

Timing runs on a shared, noisy 2-core machine, so the bound is generous (median ratios within
0.75 to 1.33, the goal being 10 %); the three kinds are interleaved so drift hits them alike,
and the exact figures are printed (`pytest -s -n 0`: xdist workers print nothing)."""

from __future__ import annotations

import random
import re
import statistics
import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from auth_service.settings import Settings
from tests.factories import DEFAULT_PASSWORD, bearer, create_user
from tests.security.harness import assert_envelope, hardened_settings, running

LOGIN = "/api/v1/auth/login"
TRIES = 50
WARM_UP = 5
# Header values that differ per request by nature; compared by shape, not value.
PER_REQUEST = {
    "x-request-id": r"[A-Za-z0-9._-]{1,128}",
    "date": r".+",
    "x-ratelimit-remaining": r"\d+",
    "x-ratelimit-reset": r"\d+",
}

KINDS: dict[str, dict[str, str]] = {
    "unknown user": {"username": "nobody-by-that-name", "password": DEFAULT_PASSWORD},
    "wrong password": {"username": "alice", "password": "not the right password"},
    "disabled account": {"username": "dora", "password": DEFAULT_PASSWORD},
}


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return hardened_settings(database_url, redis_url)


@pytest.fixture
async def client(settings: Settings) -> Any:
    await create_user(settings, username="alice")
    await create_user(settings, username="dora", is_active=False)
    async with running(settings) as test_client:
        yield test_client


def _shape(response: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body without its per-request values, headers with per-request values checked and masked."""
    body = response.json()
    error = body["error"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", error.pop("timestamp"))
    assert error.pop("request_id") == response.headers["x-request-id"]
    headers = {}
    for name, value in response.headers.items():
        if name in PER_REQUEST:
            assert re.fullmatch(PER_REQUEST[name], value), (name, value)
            value = "<varies>"
        headers[name] = value
    return response.status_code, body, headers


async def test_failures_are_identical_from_outside(client: AsyncTestClient[Any]) -> None:
    shapes = {}
    for kind, body in KINDS.items():
        response = await client.post(LOGIN, json=body)
        assert_envelope(response, 401, "AUTH_INVALID_CREDENTIALS")
        shapes[kind] = _shape(response)
    first = shapes["unknown user"]
    for kind, shape in shapes.items():
        assert shape == first, f"{kind} differs from unknown user"
    assert first[2]["www-authenticate"] == "Bearer"


@pytest.mark.serial  # a timing comparison: another test beside it skews it
async def test_failures_take_the_same_time(client: AsyncTestClient[Any]) -> None:
    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for round_ in range(WARM_UP + TRIES):
        # Rotate the order each round, so no kind always runs first after a pause.
        order = list(KINDS)[round_ % 3 :] + list(KINDS)[: round_ % 3]
        for kind in order:
            started = time.perf_counter()
            response = await client.post(LOGIN, json=KINDS[kind])
            elapsed = time.perf_counter() - started
            assert response.status_code == 401
            if round_ >= WARM_UP:
                timings[kind].append(elapsed)
    medians = {kind: statistics.median(values) for kind, values in timings.items()}
    base = medians["unknown user"]
    print(f"\nlogin failure timing, {TRIES} tries each (median / p90, ms; ratio to unknown user):")
    for kind, values in timings.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"  {kind:17s} {medians[kind] * 1000:7.1f} / {p90 * 1000:7.1f}   ratio {medians[kind] / base:.3f}")
    for kind, median in medians.items():
        assert 0.75 <= median / base <= 1.33, f"{kind}: median {median * 1000:.1f} ms vs {base * 1000:.1f} ms"
    spread = max(medians.values()) / min(medians.values())
    print(f"  max/min of medians: {spread:.3f}")
    assert spread <= 1.33


# ---- whatever the stored hash (issue: timing tells which accounts have a legacy hash) -------

LEGACY_TRIES = 20


@pytest.fixture
async def hash_zoo(database_url: str, redis_url: str) -> Any:
    """A server at raised argon2id parameters (t=3), and accounts whose hashes are legacy
    bcrypt (cost 10: slower than a current check; cost 4: faster) or argon2id at the old t=2."""
    import bcrypt
    from argon2 import PasswordHasher as Argon2

    settings = hardened_settings(database_url, redis_url, argon2_time_cost=3)
    await create_user(settings, username="alice")
    old = Argon2(memory_cost=19456, time_cost=2, parallelism=1).hash(DEFAULT_PASSWORD)
    await create_user(settings, username="olga", password_hash=old)
    for name, rounds in (("bert", 10), ("bella", 4)):
        legacy = bcrypt.hashpw(DEFAULT_PASSWORD.encode(), bcrypt.gensalt(rounds=rounds)).decode()
        await create_user(settings, username=name, password_hash=legacy)
    async with running(settings) as test_client:
        yield test_client


@pytest.mark.serial  # a timing comparison
async def test_failures_take_the_same_time_whatever_the_stored_hash(hash_zoo: AsyncTestClient[Any]) -> None:
    kinds = {
        "unknown user": "nobody-by-that-name",
        "current argon2id": "alice",
        "old argon2id (t=2)": "olga",
        "bcrypt cost 10": "bert",
        "bcrypt cost 4": "bella",
    }
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_ in range(WARM_UP + LEGACY_TRIES):
        order = list(kinds)[round_ % len(kinds) :] + list(kinds)[: round_ % len(kinds)]
        for kind in order:
            started = time.perf_counter()
            response = await hash_zoo.post(LOGIN, json={"username": kinds[kind], "password": "not the password"})
            elapsed = time.perf_counter() - started
            assert response.status_code == 401
            if round_ >= WARM_UP:
                timings[kind].append(elapsed)
    medians = {kind: statistics.median(values) for kind, values in timings.items()}
    base = medians["unknown user"]
    print(f"\nlogin failure timing by stored hash, {LEGACY_TRIES} tries each (median ms; ratio to unknown user):")
    for kind, median in medians.items():
        print(f"  {kind:20s} {median * 1000:7.1f}   ratio {median / base:.3f}")
    for kind, median in medians.items():
        assert 0.85 <= median / base <= 1.15, f"{kind}: median {median * 1000:.1f} ms vs {base * 1000:.1f} ms"


# ---- password reset and sign-up: whether the address has an account -------------------------

RESET_TRIES = 100  # fast requests: many tries keep each median steady on a noisy machine
SIGNUP_TRIES = 40
MAIL_LIMITS = {"RATE_LIMIT_EMAIL": "100000/hour", "RATE_LIMIT_EMAIL_IP": "100000/hour"}


def _alike(
    http: Any, path: str, bodies: dict[str, Any], tries: int, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """POST `bodies[kind](i)` `tries` times for each kind, in one shuffled sequence: every answer
    is 202 with the same body and headers, and each kind's median is within 10 % of the overall.

    One shuffle of all the requests, not a rotation per round: the work after a response (an
    active account's token, outbox row and job) lands on whichever request comes next. A
    rotation of three kinds put the disabled account after the active one in two rounds of
    three, and one shuffle per round never puts a kind after itself within a round; either
    measured a kind's neighbour. In one shuffled sequence every kind has every predecessor
    equally often, so the medians compare the requests themselves."""
    kinds = list(bodies)
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    shapes: dict[str, Any] = {}
    sequence = [(kind, i) for i in range(WARM_UP + tries) for kind in kinds]
    warm, measured = sequence[: WARM_UP * len(kinds)], sequence[WARM_UP * len(kinds) :]
    random.Random(len(kinds) * 7919 + tries).shuffle(measured)
    for n, (kind, round_) in enumerate(warm + measured):
        started = time.perf_counter()
        response = http.post(path, json=bodies[kind](round_))
        elapsed = time.perf_counter() - started
        assert response.status_code == 202, response.text
        headers = {k: ("<varies>" if k in PER_REQUEST else v) for k, v in response.headers.items()}
        shapes.setdefault(kind, (response.json(), headers))
        if n >= len(warm):
            timings[kind].append(elapsed)
    assert all(shape == shapes[kinds[0]] for shape in shapes.values()), shapes
    medians = {kind: statistics.median(values) for kind, values in timings.items()}
    overall = statistics.median([t for values in timings.values() for t in values])
    with capsys.disabled():
        print(f"\n{what} timing, {tries} each (median ms; ratio to the overall median):")
        for kind, median in medians.items():
            print(f"  {kind:14s} {median * 1000:6.2f}   {median / overall:.3f}")
    for kind, median in medians.items():
        assert 0.9 <= median / overall <= 1.1, f"{kind}: {median * 1000:.2f} ms vs {overall * 1000:.2f} ms"


@pytest.mark.serial  # a timing comparison
async def test_a_reset_request_answers_alike_for_every_address(
    settings: Settings, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An active account, a disabled one and an unknown address (a real server: the lookup runs
    after the response has been sent)."""
    import httpx

    from tests.e2e.conftest import api_server

    await create_user(settings, username="alice")
    await create_user(settings, username="dora", is_active=False)
    bodies = {
        kind: (lambda _, email=email: {"email": email})
        for kind, email in (
            ("unknown", "nobody@example.com"),
            ("active", "alice@example.com"),
            ("disabled", "dora@example.com"),
        )
    }
    with api_server(settings, tmp_path, **MAIL_LIMITS) as base, httpx.Client(base_url=base, timeout=10) as http:
        _alike(http, "/api/v1/auth/password-reset", bodies, RESET_TRIES, "reset request", capsys)


@pytest.mark.serial  # a timing comparison
async def test_a_sign_up_answers_alike_whether_or_not_the_address_has_an_account(
    settings: Settings, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A taken address answers exactly like a new one (the password is hashed in both cases; only
    the owner hears of the attempt, by mail)."""
    import httpx

    from tests.e2e.conftest import api_server

    await create_user(settings, username="alice")
    secret = "a long sign-up secret"
    bodies = {
        "new address": lambda i: {"username": f"new{i}", "email": f"new{i}@example.com", "password": secret},
        "taken address": lambda i: {"username": f"tak{i}", "email": "alice@example.com", "password": secret},
    }
    env = {"REGISTRATION_ENABLED": "true", **MAIL_LIMITS}
    with api_server(settings, tmp_path, **env) as base, httpx.Client(base_url=base, timeout=10) as http:
        _alike(http, "/api/v1/auth/register", bodies, SIGNUP_TRIES, "sign-up", capsys)


@pytest.mark.parametrize("require_verified", ["true", "false"])
async def test_after_a_sign_up_nothing_tells_whether_the_address_had_an_account(
    database_url: str, redis_url: str, require_verified: str
) -> None:
    """What the person who signed up can do next, with the address they gave (someone else's, or
    nobody's): a login with the chosen password, re-registering the name, their account's view."""
    settings = hardened_settings(
        database_url, redis_url, registration_enabled="true", registration_require_verified_email=require_verified
    )
    await create_user(settings, username="alice")
    secret = "a long sign-up secret"
    seen: dict[str, Any] = {}
    async with running(settings) as http:
        for kind, name, address in (
            ("new", "newcomer", "newcomer@example.com"),
            ("taken", "taker", "alice@example.com"),
        ):
            signed = await http.post(
                "/api/v1/auth/register", json={"username": name, "email": address, "password": secret}
            )
            assert signed.status_code == 202, signed.text
            logged = await http.post(LOGIN, json={"username": name, "password": secret})
            again = await http.post(
                "/api/v1/auth/register", json={"username": name, "email": f"{name}.2@example.com", "password": secret}
            )
            me: Any = None
            if logged.status_code == 200:
                me = (await http.get("/api/v1/users/me", headers=bearer(logged.json()["access_token"]))).json()
                me = {k: v for k, v in me.items() if k not in ("id", "username", "email", "created_at")} | {
                    "email": me["email"] == address
                }
                body: Any = "tokens"
            else:
                body = (logged.json()["error"]["code"], logged.json()["error"]["message"])
            seen[kind] = (logged.status_code, body, me, again.status_code, again.json().get("error", {}).get("code"))
    expected = 403 if require_verified == "true" else 200
    assert seen["new"][0] == expected, seen
    assert seen["taken"] == seen["new"]
