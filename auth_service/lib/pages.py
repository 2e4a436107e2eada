"""Hosted pages: Jinja2 templates under auth_service/templates/pages, HTML-escaped, sent with
headers that keep them out of caches, frames and other origins."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import Response
from litestar.enums import MediaType

__all__ = ["PAGE_HEADERS", "page"]

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_ENV = Environment(
    loader=PackageLoader("auth_service", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
    undefined=StrictUndefined,
)


def page(template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response[str]:
    """pages/`template`.html.j2 rendered with `context`, as an HTML response (`headers` replace
    PAGE_HEADERS' of the same name: a page that runs our script widens its CSP for that only)."""
    document = _ENV.get_template(f"pages/{template}.html.j2").render(**context)
    return Response(
        document, status_code=status, media_type=MediaType.HTML, headers={**PAGE_HEADERS, **(headers or {})}
    )
