"""When a successful login deserves an alert: the rule, in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LoginHistory", "SuspicionRules", "suspicious_reasons"]


@dataclass(frozen=True, slots=True)
class SuspicionRules:
    new_device_days: int = 30  # SUSPICIOUS_NEW_DEVICE_DAYS
    failures: int = 5  # SUSPICIOUS_FAILURES
    failure_window_minutes: int = 15  # SUSPICIOUS_FAILURE_WINDOW_MINUTES


@dataclass(frozen=True, slots=True)
class LoginHistory:
    """What the records say about the user just before this successful login."""

    has_earlier_success: bool  # any successful login in the new-device window
    seen_this_device: bool  # a success from this IP with this user agent in that window
    recent_failures: int  # failed attempts in the failure window


def suspicious_reasons(history: LoginHistory, rules: SuspicionRules) -> list[str]:
    """Why this success is suspicious (empty: it is not).

    - `new_device`: an IP and user agent not seen for this user in the window. A user with
      no success in the window at all (first login, or back after a long time) is not
      alerted for that alone: there is nothing to compare with.
    - `after_failures`: at least `failures` failed attempts in the failure window.
    """
    reasons = []
    if history.has_earlier_success and not history.seen_this_device:
        reasons.append("new_device")
    if history.recent_failures >= rules.failures:
        reasons.append("after_failures")
    return reasons
