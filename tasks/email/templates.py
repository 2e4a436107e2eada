"""The messages, in plain text and HTML: what happened, when (UTC), from where, and what to do."""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

__all__ = ["Rendered", "build_message", "daily_report", "login_notification", "suspicious_alert"]


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


_REASONS = {
    "new_device": "it came from a device and network not used with your account in the last 30 days",
    "after_failures": "it came right after several failed attempts to guess your password",
}


def _html(title: str, paragraphs: list[str], link: str | None = None, table: str = "") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    button = (
        f'<p><a href="{html.escape(link, quote=True)}" style="background:#b91c1c;color:#fff;padding:10px 16px;'
        "text-decoration:none;border-radius:4px\">This wasn't me</a></p>"
        if link
        else ""
    )
    return (
        '<!doctype html><html><body style="font-family:system-ui,sans-serif;max-width:36rem">'
        f"<h2>{html.escape(title)}</h2>{body}{table}{button}</body></html>"
    )


def _where(details: dict[str, Any]) -> tuple[str, str]:
    ip = str(details.get("ip_address") or "unknown address")
    agent = str(details.get("user_agent") or "unknown device")
    return ip, agent


def login_notification(username: str, details: dict[str, Any], link: str) -> Rendered:
    ip, agent = _where(details)
    when = str(details.get("timestamp", ""))
    text = (
        f"Hello {username},\n\n"
        f"Your account signed in at {when} (UTC) from {ip} ({agent}).\n\n"
        "If this was you, there is nothing to do.\n"
        "If it was not you, open this link to sign out every session at once, then change your password:\n"
        f"{link}\n"
    )
    markup = _html(
        "New sign-in to your account",
        [
            f"Hello {html.escape(username)},",
            f"Your account signed in at <strong>{html.escape(when)} (UTC)</strong> from "
            f"<strong>{html.escape(ip)}</strong> ({html.escape(agent)}).",
            "If this was you, there is nothing to do. If it was not you, sign out every session at once "
            "with the button below, then change your password.",
        ],
        link,
    )
    return Rendered("New sign-in to your account", text, markup)


def suspicious_alert(username: str, details: dict[str, Any], link: str) -> Rendered:
    ip, agent = _where(details)
    when = str(details.get("timestamp", ""))
    reasons = [_REASONS.get(str(r), str(r)) for r in details.get("reasons", [])]
    why = "; ".join(reasons) or "it does not match your usual sign-ins"
    text = (
        f"Hello {username},\n\n"
        f"We noticed a suspicious sign-in to your account at {when} (UTC) from {ip} ({agent}): {why}.\n\n"
        "If this was not you, open this link now to sign out every session, then change your password:\n"
        f"{link}\n\n"
        "If it was you, you can ignore this message.\n"
    )
    markup = _html(
        "Suspicious sign-in to your account",
        [
            f"Hello {html.escape(username)},",
            f"We noticed a suspicious sign-in at <strong>{html.escape(when)} (UTC)</strong> from "
            f"<strong>{html.escape(ip)}</strong> ({html.escape(agent)}): {html.escape(why)}.",
            "If this was not you, sign out every session now with the button below, then change your password. "
            "If it was you, you can ignore this message.",
        ],
        link,
    )
    return Rendered("Suspicious sign-in to your account", text, markup)


def daily_report(day: str, stats: dict[str, Any]) -> Rendered:
    rate = stats["success_rate"]
    lines = [
        f"Login report for {day} (UTC)",
        "",
        f"Attempts: {stats['attempts']}",
        f"Successful: {stats['successes']} ({rate:.1%})",
        f"Failed: {stats['failures']}",
        f"Unique users: {stats['unique_users']}",
        "",
        "Top failing IP addresses:",
        *_listing(stats["top_failing_ips"]),
        "",
        "Top failing usernames:",
        *_listing(stats["top_failing_usernames"]),
    ]

    def rows(items: list[tuple[str, int]]) -> str:
        cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in items)
        return cells or "<tr><td>(none)</td></tr>"

    summary = [
        ("Attempts", str(stats["attempts"])),
        ("Successful", f"{stats['successes']} ({rate:.1%})"),
        ("Failed", str(stats["failures"])),
        ("Unique users", str(stats["unique_users"])),
    ]
    table = (
        "<table>" + "".join(f"<tr><th align=left>{k}</th><td>{v}</td></tr>" for k, v in summary) + "</table>"
        f"<h3>Top failing IP addresses</h3><table>{rows(stats['top_failing_ips'])}</table>"
        f"<h3>Top failing usernames</h3><table>{rows(stats['top_failing_usernames'])}</table>"
    )
    markup = _html(f"Login report for {day} (UTC)", [], table=table)
    return Rendered(f"Daily login report {day}", "\n".join(lines) + "\n", markup)


def _listing(items: list[tuple[str, int]]) -> list[str]:
    return [f"  {key}: {count}" for key, count in items] or ["  (none)"]


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
