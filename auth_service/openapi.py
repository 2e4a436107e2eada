"""OpenAPI wiring: the error envelope on every operation, Swagger UI 5 served from the app."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import swagger_ui
from litestar import Request, Router
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from auth_service.errors import ErrorEnvelope

__all__ = ["DOCS_ASSETS_PATH", "docs_assets_router", "error_responses", "openapi_config", "require_json_body"]

DOCS_ASSETS_PATH = "/docs-assets"
_SWAGGER_STATIC = Path(swagger_ui.__file__).parent / "static"

_DESCRIPTIONS = {
    400: "VALIDATION_ERROR: the body or a parameter is malformed; `details` lists the fields",
    401: "AUTH_INVALID_CREDENTIALS, AUTH_TOKEN_INVALID, AUTH_TOKEN_EXPIRED or AUTH_TOKEN_REVOKED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE: the body is over the limit (64 KiB by default)",
    415: "UNSUPPORTED_MEDIA_TYPE: send Content-Type: application/json",
    429: "RATE_LIMIT_EXCEEDED: see Retry-After",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE: a dependency is down or the service is saturated; retry",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The error envelope, declared for each status an operation can return (500 always)."""
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description=_DESCRIPTIONS[status], generate_examples=False)
        for status in (*statuses, 500)
    }


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """before_request: a request that carries a body must say it is JSON.

    Async on purpose: Litestar runs a sync hook on a worker thread, a thread hop per request.
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    length = request.headers.get("content-length")
    has_body = (length is not None and length.strip() not in ("", "0")) or "transfer-encoding" in request.headers
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise HTTPException(status_code=415)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Auth Service",
        version=version("auth-service"),
        description="Username/password login with JWT access tokens and rotating refresh tokens. "
        'Every error uses one envelope: `{"error": {"code", "message", "timestamp", "request_id"}}`. '
        "Access tokens are read from the `Authorization: Bearer` header only: a request that carries "
        "`access_token` in its query string is refused with 401 AUTH_TOKEN_INVALID, even with a good header.",
        path="/docs",
        render_plugins=[
            SwaggerRenderPlugin(
                path=["/", "/swagger"],
                js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=f'<link rel="icon" type="image/png" href="{DOCS_ASSETS_PATH}/favicon-32x32.png">',
            )
        ],
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
            }
        ),
        use_handler_docstrings=False,
    )


def docs_assets_router() -> Router:
    return create_static_files_router(
        path=DOCS_ASSETS_PATH, directories=[_SWAGGER_STATIC], include_in_schema=False, name="docs-assets"
    )
