"""The messages, in plain text and HTML (Jinja2, templates/*.txt.j2 and *.html.j2): what
happened, when (UTC), from where, and what to do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = [
    "ACCOUNT_MESSAGES",
    "Rendered",
    "build_message",
    "daily_report",
    "invitation",
    "login_notification",
    "passkey_added",
    "passkey_removed",
    "password_changed",
    "password_reset",
    "suspicious_alert",
]


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


_REASONS = {
    "new_device": "it came from a device and network not used with your account in the last {days} days",
    "after_failures": "it came right after several failed attempts to guess your password",
}


_ENV = Environment(
    loader=PackageLoader("auth_service.domain.notifications", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    keep_trailing_newline=True,
    trim_blocks=True,
    undefined=StrictUndefined,
)


def _render(name: str, subject: str, **context: Any) -> Rendered:
    """`name`.txt.j2 and `name`.html.j2 with the same context (HTML escaped, text as is)."""
    text = _ENV.get_template(f"{name}.txt.j2").render(**context)
    markup = _ENV.get_template(f"{name}.html.j2").render(title=subject, **context)
    return Rendered(subject, text, markup)


def _where(details: dict[str, Any]) -> tuple[str, str]:
    ip = str(details.get("ip_address") or "unknown address")
    agent = str(details.get("user_agent") or "unknown device")
    return ip, agent


def login_notification(username: str, details: dict[str, Any], link: str) -> Rendered:
    ip, agent = _where(details)
    when = str(details.get("timestamp", ""))
    return _render(
        "login_notification", "New sign-in to your account", username=username, when=when, ip=ip, agent=agent, link=link
    )


def password_reset(username: str, details: dict[str, Any], action: str) -> Rendered:
    minutes = int(details.get("minutes", 30))
    return _render("password_reset", "Reset your password", username=username, minutes=minutes, action=action, link="")


def password_changed(username: str, details: dict[str, Any], action: str) -> Rendered:
    how = "reset with an e-mailed link" if details.get("via") == "reset" else "changed"
    when = str(details.get("timestamp", ""))
    return _render(
        "password_changed", "Your password was changed", username=username, how=how, when=when, action=action, link=""
    )


def verify_email(username: str, details: dict[str, Any], action: str) -> Rendered:
    hours = int(details.get("hours", 48))
    return _render(
        "verify_email", "Confirm your e-mail address", username=username, hours=hours, action=action, link=""
    )


def email_changed(username: str, details: dict[str, Any], action: str) -> Rendered:
    when = str(details.get("timestamp", ""))
    return _render(
        "email_changed", "Your e-mail address was changed", username=username, when=when, action=action, link=""
    )


def signup_attempt(username: str, details: dict[str, Any], action: str) -> Rendered:
    return _render(
        "signup_attempt", "Someone tried to sign up with your address", username=username, action=action, link=""
    )


def invitation(username: str, details: dict[str, Any], action: str) -> Rendered:
    hours = int(details.get("hours", 72))
    return _render(
        "invitation", "Your new account: choose a password", username=username, hours=hours, action=action, link=""
    )


def _passkey(added: bool) -> Callable[[str, dict[str, Any], str], Rendered]:
    def render(username: str, details: dict[str, Any], action: str) -> Rendered:
        name = str(details.get("name") or "a passkey")
        when = str(details.get("timestamp", ""))
        what = f'The passkey "{name}" was {"added to" if added else "removed from"} your account'
        subject = "A passkey was added to your account" if added else "A passkey was removed from your account"
        return _render("passkey_changed", subject, username=username, what=what, when=when, action=action, link="")

    return render


passkey_added = _passkey(added=True)
passkey_removed = _passkey(added=False)


_MFA_EVENTS = {
    "totp_enabled": ("Two-step sign-in was turned on", "An authenticator app was added to your account"),
    "totp_disabled": ("Two-step sign-in was turned off", "The authenticator app was removed from your account"),
    "recovery_regenerated": ("New recovery codes", "New recovery codes were created; the old ones no longer work"),
    "recovery_used": ("A recovery code was used", "A recovery code was used to sign in to your account"),
    "reset": ("Your second factors were removed", "An administrator removed every second factor of your account"),
}
LOW_RECOVERY_CODES = 2


def mfa_changed(username: str, details: dict[str, Any], action: str) -> Rendered:
    """A second factor added, removed or used (`event`); a low count of recovery codes is said."""
    subject, what = _MFA_EVENTS.get(
        str(details.get("event")), ("Your sign-in settings changed", "Your sign-in settings changed")
    )
    remaining = details.get("remaining")
    low = isinstance(remaining, int) and remaining <= LOW_RECOVERY_CODES
    if low:
        subject = f"{subject}: {remaining} left"
    when = str(details.get("timestamp", ""))
    return _render(
        "mfa_changed",
        subject,
        username=username,
        what=what,
        when=when,
        low=low,
        remaining=remaining,
        action=action,
        link="",
    )


# The account mails (kind: render(username, details, action link)).
ACCOUNT_MESSAGES = {
    "passkey_added": passkey_added,
    "passkey_removed": passkey_removed,
    "password_reset": password_reset,
    "password_changed": password_changed,
    "verify_email": verify_email,
    "email_changed": email_changed,
    "signup_attempt": signup_attempt,
    "invitation": invitation,
    "mfa_changed": mfa_changed,
}


def suspicious_alert(username: str, details: dict[str, Any], link: str) -> Rendered:
    ip, agent = _where(details)
    when = str(details.get("timestamp", ""))
    # The window the login was judged by (SUSPICIOUS_NEW_DEVICE_DAYS when it happened; 30, the
    # default, for alerts written before the mail said it).
    days = int(details.get("new_device_days", 30))
    reasons = [_REASONS.get(str(r), str(r)).format(days=days) for r in details.get("reasons", [])]
    why = "; ".join(reasons) or "it does not match your usual sign-ins"
    return _render(
        "suspicious_alert",
        "Suspicious sign-in to your account",
        username=username,
        when=when,
        ip=ip,
        agent=agent,
        why=why,
        link=link,
    )


def daily_report(day: str, stats: dict[str, Any]) -> Rendered:
    rendered = _render(
        "daily_report",
        f"Login report for {day} (UTC)",
        day=day,
        stats=stats,
        rate=f"{stats['success_rate']:.1%}",
        link=None,
    )
    return Rendered(f"Daily login report {day}", rendered.text, rendered.html)


def build_message(rendered: Rendered, *, sender: str, to: list[str], message_id: str | None = None) -> EmailMessage:
    """A multipart/alternative message; a stable Message-ID lets mail systems drop duplicates."""
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{message_id}@auth-service>" if message_id else make_msgid(domain="auth-service")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
