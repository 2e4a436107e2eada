"""Writes the five Grafana dashboards (JSON) from one description, so every panel query
lives here once. `python -m observability.grafana.build` regenerates them; a test checks
the committed files match.

A healthy service reads 0 on every panel, never "no data" (tests/e2e/test_monitoring.py checks
it against a fresh service): the counters start at 0 for their known label values
(observability/metrics.py), and the panels over histograms, ratios and label filters that a
quiet service leaves empty fall back to one 0 series (`_or_zero`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "victoriametrics"}

HTTP = "http_server_request_duration_seconds"
W = "5m"


def _or_zero(expr: str, **labels: str) -> str:
    """`expr`, or one series at 0 when `expr` has none (no request, no error in the window).

    `or on()` adds the 0 only when `expr` is empty: a bare `or vector(0)` would add it beside
    every `sum by (x)` series, which all have labels vector(0) lacks. `labels` name the 0 series
    for the panel's legend ("none"). VictoriaMetrics treats NaN as no value, so the quantile of a
    histogram with no observation in the window falls back to 0 too.
    """
    zero = "vector(0)"
    for name, value in labels.items():
        zero = f'label_replace({zero}, "{name}", "{value}", "", "")'
    return f"{expr} or on() {zero}"


def _share(part: str, whole: str) -> str:
    """`part / whole`, 0 when `part` has no series or `whole` is 0 (no traffic: no failures)."""
    return _or_zero(f"({part} or vector(0)) / ({whole} > 0)")


def _quantiles(metric: str, where: str = "") -> list[tuple[str, str]]:
    return [
        (f"p{q}", _or_zero(f"histogram_quantile(0.{q}, sum by (le) (rate({metric}_bucket{where}[{W}])))"))
        for q in ("50", "95", "99")
    ]


def _row(title: str) -> tuple[str, str, list[tuple[str, str]]]:
    """A row heading: the panels after it, up to the next row, are under it."""
    return (title, "row", [])


# dashboard uid -> (title, description, panels); panel = (title, unit, [(legend, expr), ...]),
# or _row(title) for a heading.
DASHBOARDS: dict[str, tuple[str, str, list[tuple[str, str, list[tuple[str, str]]]]]] = {
    "auth-authentication": (
        "Auth service / Authentication",
        "Logins by outcome and reason, tokens issued, token timings, rate-limit rejections, passkeys, second "
        "factors, OpenID Connect.",
        [
            (
                "Login attempts by outcome",
                "reqps",
                [("{{outcome}}", f"sum by (outcome) (rate(auth_login_attempts_total[{W}]))")],
            ),
            (
                "Login failures by reason",
                "reqps",
                [("{{reason}}", f'sum by (reason) (rate(auth_login_attempts_total{{outcome="failure"}}[{W}]))')],
            ),
            (
                "Authentication failure rate",
                "percentunit",
                [
                    (
                        "failure rate",
                        _share(
                            f'sum(rate(auth_login_attempts_total{{outcome="failure"}}[{W}]))',
                            f"sum(rate(auth_login_attempts_total[{W}]))",
                        ),
                    )
                ],
            ),
            ("Tokens issued by type", "ops", [("{{type}}", f"sum by (type) (rate(auth_tokens_issued_total[{W}]))")]),
            ("Token generation time", "s", _quantiles("auth_token_generation_duration_seconds")),
            ("Token validation time", "s", _quantiles("auth_token_validation_duration_seconds")),
            (
                "Rate-limit rejections by endpoint",
                "reqps",
                [("{{endpoint}}", f"sum by (endpoint) (rate(ratelimit_rejections_total[{W}]))")],
            ),
            _row("Passkeys"),
            ("Passkeys registered", "ops", [("registered", f"sum(rate(auth_passkey_registrations_total[{W}]))")]),
            (
                "Passwordless logins by outcome",
                "reqps",
                [("{{outcome}}", f"sum by (outcome) (rate(auth_passkey_logins_total[{W}]))")],
            ),
            _row("Second factors"),
            (
                "Second steps by method and outcome",
                "reqps",
                [("{{method}} {{outcome}}", f"sum by (method, outcome) (rate(auth_mfa_challenges_total[{W}]))")],
            ),
            (
                "Failed second steps (right password, wrong code)",
                "reqps",
                [("mfa_failed", f'sum(rate(auth_login_attempts_total{{reason="mfa_failed"}}[{W}]))')],
            ),
            (
                "Second factors enrolled by method",
                "ops",
                [("{{method}}", f"sum by (method) (rate(auth_mfa_enrolments_total[{W}]))")],
            ),
            _row("OpenID Connect"),
            (
                "Authorizations by outcome",
                "reqps",
                [("{{outcome}}", f"sum by (outcome) (rate(auth_oauth_authorizations_total[{W}]))")],
            ),
            (
                "Token grants by type and outcome",
                "reqps",
                [
                    (
                        "{{grant_type}} {{outcome}}",
                        f"sum by (grant_type, outcome) (rate(auth_oauth_token_grants_total[{W}]))",
                    )
                ],
            ),
            (
                "Introspections by outcome",
                "reqps",
                [("{{outcome}}", f"sum by (outcome) (rate(auth_oauth_introspections_total[{W}]))")],
            ),
            _row("Audit"),
            (
                "Audit events by action",
                "ops",
                [("{{action}}", f"sum by (action) (rate(audit_events_total[{W}]))")],
            ),
            (
                "Admin API requests by outcome",
                "reqps",
                [("{{outcome}}", f"sum by (outcome) (rate(admin_requests_total[{W}]))")],
            ),
            (
                "Admin API requests by operation",
                "reqps",
                [("{{operation}}", f"sum by (operation) (rate(admin_requests_total[{W}]))")],
            ),
        ],
    ),
    "auth-api-performance": (
        "Auth service / API performance",
        "Request rate and latency percentiles (p50/p95/p99) by route.",
        [
            (
                "Requests by route",
                "reqps",
                [
                    (
                        "{{http_route}}",
                        _or_zero(
                            f'sum by (http_route) (rate({HTTP}_count{{http_route!="unmatched"}}[{W}]))',
                            http_route="none",
                        ),
                    )
                ],
            ),
            ("Latency, all routes", "s", _quantiles(HTTP, '{http_route!="unmatched"}')),
            (
                "p95 latency by route",
                "s",
                [
                    (
                        "{{http_route}}",
                        _or_zero(
                            f'histogram_quantile(0.95, sum by (le, http_route) (rate({HTTP}_bucket{{http_route!="unmatched"}}[{W}])))',
                            http_route="none",
                        ),
                    )
                ],
            ),
            (
                "p99 latency by route",
                "s",
                [
                    (
                        "{{http_route}}",
                        _or_zero(
                            f'histogram_quantile(0.99, sum by (le, http_route) (rate({HTTP}_bucket{{http_route!="unmatched"}}[{W}])))',
                            http_route="none",
                        ),
                    )
                ],
            ),
            (
                "Responses by status",
                "reqps",
                [
                    (
                        "{{http_response_status_code}}",
                        _or_zero(
                            f"sum by (http_response_status_code) (rate({HTTP}_count[{W}]))",
                            http_response_status_code="none",
                        ),
                    )
                ],
            ),
        ],
    ),
    "auth-system-health": (
        "Auth service / System health",
        "Process CPU and memory, database pool, Redis memory, job queue and Redis failures.",
        [
            (
                "Process CPU (cores)",
                "none",
                [("{{job}} {{instance}}", f"sum by (job, instance) (rate(process_cpu_time_seconds_total[{W}]))")],
            ),
            ("Process memory (RSS)", "bytes", [("{{job}} {{instance}}", "process_memory_usage_bytes")]),
            ("Database pool", "none", [("{{state}}", "sum by (state) (db_client_connections_usage_connections)")]),
            ("Redis memory", "bytes", [("used", "max(redis_memory_used_bytes)")]),
            ("Job queue length", "none", [("queued", "max(jobs_queue_length)")]),
            ("Scrape targets up", "none", [("{{job}} {{instance}}", "up")]),
        ],
    ),
    "auth-user-activity": (
        "Auth service / User activity",
        "Active users, logins, refreshes and logouts.",
        [
            ("Active users (15 min)", "none", [("active", "max(auth_active_users)")]),
            (
                "Successful logins",
                "reqps",
                [("logins", f'sum(rate(auth_login_attempts_total{{outcome="success"}}[{W}]))')],
            ),
            (
                "Refreshes and logouts",
                "reqps",
                [
                    (
                        "{{http_route}}",
                        _or_zero(
                            f'sum by (http_route) (rate({HTTP}_count{{http_route=~"/api/v1/auth/(refresh|logout)"}}[{W}]))',
                            http_route="none",
                        ),
                    )
                ],
            ),
            (
                "Verifications",
                "reqps",
                [("verify", _or_zero(f'sum(rate({HTTP}_count{{http_route="/api/v1/auth/verify"}}[{W}]))'))],
            ),
            (
                "Password changes and resets",
                "ops",
                [
                    ("changed by their owner", f"sum(rate(auth_password_changes_total[{W}]))"),
                    ("reset {{stage}}", f"sum by (stage) (rate(auth_password_resets_total[{W}]))"),
                ],
            ),
            (
                "Sign-ups and verifications",
                "ops",
                [
                    ("sign-ups {{outcome}}", f"sum by (outcome) (rate(auth_registrations_total[{W}]))"),
                    ("addresses verified", f"sum(rate(auth_email_verifications_total[{W}]))"),
                ],
            ),
            (
                "Sessions ended one at a time",
                "ops",
                [("by {{by}}", f"sum by (by) (rate(auth_session_revocations_total[{W}]))")],
            ),
            (
                "Background jobs by task and outcome",
                "ops",
                [("{{task}} {{outcome}}", f"sum by (task, outcome) (rate(jobs_runs_total[{W}]))")],
            ),
        ],
    ),
    "auth-errors": (
        "Auth service / Errors",
        "Server errors, client errors, rate limiting and Redis failures.",
        [
            (
                "Error rate (5xx share)",
                "percentunit",
                [
                    (
                        "5xx",
                        _share(
                            f'sum(rate({HTTP}_count{{http_response_status_code=~"5.."}}[{W}]))',
                            f"sum(rate({HTTP}_count[{W}]))",
                        ),
                    )
                ],
            ),
            (
                "5xx by route",
                "reqps",
                [
                    (
                        "{{http_route}} {{http_response_status_code}}",
                        _or_zero(
                            f'sum by (http_route, http_response_status_code) (rate({HTTP}_count{{http_response_status_code=~"5.."}}[{W}]))',
                            http_route="none",
                        ),
                    )
                ],
            ),
            (
                "4xx by status",
                "reqps",
                [
                    (
                        "{{http_response_status_code}}",
                        _or_zero(
                            f'sum by (http_response_status_code) (rate({HTTP}_count{{http_response_status_code=~"4.."}}[{W}]))',
                            http_response_status_code="none",
                        ),
                    )
                ],
            ),
            (
                "Rate-limit rejections",
                "reqps",
                [("{{endpoint}}", f"sum by (endpoint) (rate(ratelimit_rejections_total[{W}]))")],
            ),
            (
                "Redis failures seen by the rate limiter",
                "reqps",
                [("{{endpoint}}", f"sum by (endpoint) (rate(ratelimit_redis_failures_total[{W}]))")],
            ),
            ("Database connection errors", "reqps", [("errors", f"sum(rate(db_connection_errors_total[{W}]))")]),
        ],
    ),
}


def _layout(panels: list[tuple[str, str, list[tuple[str, str]]]]) -> list[dict[str, Any]]:
    """Two panels a line; a row heading takes a line of its own and starts a new one."""
    placed: list[dict[str, Any]] = []
    y, column = 0, 0
    for index, (title, unit, targets) in enumerate(panels):
        if unit == "row":
            y += 8 if column else 0
            placed.append(
                {
                    "id": index + 1,
                    "type": "row",
                    "title": title,
                    "collapsed": False,
                    "panels": [],
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                }
            )
            y, column = y + 1, 0
            continue
        placed.append(_panel(index, title, unit, targets, x=column * 12, y=y))
        column = 1 - column
        y += 8 if column == 0 else 0
    return placed


def _panel(index: int, title: str, unit: str, targets: list[tuple[str, str]], *, x: int, y: int) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def build() -> dict[str, dict[str, Any]]:
    return {
        uid: {
            "uid": uid,
            "title": title,
            "description": description,
            "tags": ["auth-service"],
            "timezone": "utc",
            "schemaVersion": 39,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "panels": _layout(panels),
        }
        for uid, (title, description, panels) in DASHBOARDS.items()
    }


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for uid, dashboard in build().items():
        (OUT / f"{uid}.json").write_text(render(dashboard))
        print(f"wrote {OUT / (uid + '.json')}")


if __name__ == "__main__":
    main()
