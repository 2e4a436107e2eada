"""The passkey mails: what changed (the passkey's name), when, and what to do if it was not you;
the name a user chose is escaped in the HTML part."""

from __future__ import annotations

from auth_service.domain.notifications.messages import ACCOUNT_MESSAGES


def test_added_and_removed_passkeys_are_told_with_their_name_and_time() -> None:
    details = {"name": "Laptop <b>", "timestamp": "2026-12-07 10:00:00"}
    added = ACCOUNT_MESSAGES["passkey_added"]("alice", details, "https://auth.example.com/reset-password")
    removed = ACCOUNT_MESSAGES["passkey_removed"]("alice", details, "https://auth.example.com/reset-password")
    assert added.subject == "A passkey was added to your account"
    assert removed.subject == "A passkey was removed from your account"
    assert 'The passkey "Laptop <b>" was added to your account at 2026-12-07 10:00:00 (UTC)' in added.text
    assert "removed from your account" in removed.text
    assert "Laptop &lt;b&gt;" in added.html and "<b>" not in added.html.split("Laptop", 1)[1][:10]
    assert "https://auth.example.com/reset-password" in added.text and "reset-password" in added.html
