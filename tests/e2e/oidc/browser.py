"""A scripted browser for the authorization endpoint: follows it to /login, posts the form
(hidden csrf and return_to, the csrf cookie), answers the consent page when one comes, and
returns the redirect to the application's redirect URI, which it does not follow."""

from __future__ import annotations

import html
import re

import httpx

__all__ = ["hidden_field", "sign_in"]


def hidden_field(page: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"', page)
    assert found, f"the page has no hidden {name} field: {page[:500]}"
    return html.unescape(found.group(1))


def _redirect(response: httpx.Response, status: tuple[int, ...] = (302, 303)) -> httpx.URL:
    assert response.status_code in status, f"{response.request.url}: {response.status_code} {response.text[:500]}"
    return response.request.url.join(response.headers["location"])


async def sign_in(
    browser: httpx.AsyncClient, authorization_url: str, username: str, password: str, *, consent: bool = False
) -> httpx.URL:
    """The URL the provider sends the browser back to (redirect_uri?code=…&state=…&iss=…).

    `browser` keeps cookies and does not follow redirects; `consent`: expect the consent page
    (a client that is not first-party) and allow.
    """
    login_url = _redirect(await browser.get(authorization_url))
    assert login_url.path == "/login", login_url
    form = await browser.get(login_url)
    assert form.status_code == 200 and "auth_csrf" in browser.cookies, form.text[:500]
    posted = await browser.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf": hidden_field(form.text, "csrf"),
            "return_to": hidden_field(form.text, "return_to"),
        },
    )
    back = _redirect(posted, (303,))
    assert "auth_session" in browser.cookies, posted.headers
    answer = await browser.get(back)
    if consent:
        assert answer.status_code == 200 and "asks to:" in answer.text, answer.text[:500]
        answer = await browser.post(
            "/oauth2/consent",
            data={
                "csrf": hidden_field(answer.text, "csrf"),
                "request": hidden_field(answer.text, "request"),
                "decision": "allow",
            },
        )
    return _redirect(answer, (302,))
