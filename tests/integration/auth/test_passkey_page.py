"""The /passkeys page and its script: served by the app, under a CSP that allows our one script
file and requests to our own origin, and no inline script at all."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient


async def test_the_page_runs_only_our_script_file(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/passkeys")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert page.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.DOTALL)
    assert scripts == [(' src="/static/passkeys.js" defer', "")]  # no inline script, no inline handler
    assert not re.search(r"\son[a-z]+=", page.text)
    script = await client.get("/static/passkeys.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "navigator.credentials.create" in script.text and "navigator.credentials.get" in script.text
    assert (await client.get("/static/../app.py")).status_code in (400, 404)
