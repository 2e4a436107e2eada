"""The published documents: the JWK Set (RFC 7517), OpenID Connect Discovery 1.0 and the OAuth
2.0 Authorization Server Metadata (RFC 8414).

All three are public, cacheable and cheap: served from bytes built once (the JWKS again only
when the keys change), with `Cache-Control: public, max-age=300` and an ETag. They carry no
per-IP limit of their own ("none"): checking one would cost more than the document.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from auth_service.lib.http import error_responses
from auth_service.lib.keyring import KeyRing
from auth_service.settings import Settings
from auth_service.settings.policy import JWKS_MAX_AGE

__all__ = ["DOCUMENT_PATHS", "SCOPES", "WellKnownController", "discovery_document", "document_bytes"]

SCOPES = ("openid", "profile", "email", "offline_access")
JWKS_MEDIA_TYPE = "application/jwk-set+json"
_CACHE = f"public, max-age={JWKS_MAX_AGE}"
_OPT = {"rate_limit": "none"}


class Jwk(msgspec.Struct):
    """A public key (RFC 7517): its type's members (`crv`, `x`, `y`; `n`, `e`) and these."""

    kty: str
    kid: str
    alg: str
    use: str


class JwkSet(msgspec.Struct):
    keys: list[Jwk]


class ProviderMetadata(msgspec.Struct):
    """OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 (the members clients rely on; all are served)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    revocation_endpoint: str
    introspection_endpoint: str
    end_session_endpoint: str
    scopes_supported: list[str]
    response_types_supported: list[str]
    grant_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    code_challenge_methods_supported: list[str]


def _documented(container: type[msgspec.Struct], media_type: str, what: str) -> dict[int, ResponseSpec]:
    return {
        200: ResponseSpec(data_container=container, media_type=media_type, description=what, generate_examples=False),
        304: ResponseSpec(data_container=None, description="Unchanged since the ETag in If-None-Match"),
        **error_responses(),
    }


def discovery_document(settings: Settings) -> dict[str, Any]:
    """The provider's metadata: every endpoint under the issuer, PUBLIC_BASE_URL."""
    issuer = settings.app.base_url
    algorithm = settings.keys.signing_algorithm
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [algorithm],
        "userinfo_signing_alg_values_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "amr",
            "sid",
            "name",
            "preferred_username",
            "email",
            "email_verified",
        ],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }


class _Document:
    """A JSON document as the bytes and ETag it is served with."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(document, separators=(",", ":")).encode()
        self.etag = f'"{hashlib.sha256(self.body).hexdigest()[:32]}"'


def _answer(request: Request[Any, Any, Any], body: bytes, etag: str, media_type: str) -> Response[bytes]:
    headers = {"ETag": etag, "Cache-Control": _CACHE}
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)  # "; charset=utf-8" added (hardening.py)


class WellKnownController(Controller):
    path = "/.well-known"
    tags = ["OpenID Connect"]
    include_in_schema = True

    _jwks: tuple[bytes, str] = (b"", "")

    @get(
        "/jwks.json",
        opt=_OPT,
        media_type=JWKS_MEDIA_TYPE,
        summary="The signing keys (JWK Set): every next, active and retiring key",
        responses=_documented(JwkSet, JWKS_MEDIA_TYPE, "The published keys, newest first"),
    )
    async def jwks(self, request: Request[Any, Any, Any], keyring: NamedDependency[KeyRing]) -> Response[bytes]:
        body = keyring.jwks()
        cached_body, etag = WellKnownController._jwks
        if body is not cached_body:
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            WellKnownController._jwks = (body, etag)
        return _answer(request, body, etag, JWKS_MEDIA_TYPE)

    @get(
        "/openid-configuration",
        opt=_OPT,
        summary="OpenID Connect Discovery 1.0: the provider's metadata",
        responses=_documented(ProviderMetadata, "application/json", "The provider's metadata"),
    )
    async def openid_configuration(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        document = _metadata(request, settings)
        return _answer(request, document.body, document.etag, "application/json")

    @get(
        "/oauth-authorization-server",
        opt=_OPT,
        summary="RFC 8414 authorization server metadata (the same)",
        responses=_documented(ProviderMetadata, "application/json", "The provider's metadata"),
    )
    async def oauth_authorization_server(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        document = _metadata(request, settings)
        return _answer(request, document.body, document.etag, "application/json")


def _metadata(request: Request[Any, Any, Any], settings: Settings) -> _Document:
    return _metadata_of(request.app, settings)


def _metadata_of(app: Any, settings: Settings) -> _Document:
    """Built on the first request, kept in the app's state (settings do not change)."""
    document: _Document | None = getattr(app.state, "oidc_discovery", None)
    if document is None:
        document = _Document(discovery_document(settings))
        app.state.oidc_discovery = document
    return document


JWKS_PATH = "/.well-known/jwks.json"
DOCUMENT_PATHS = frozenset({JWKS_PATH, "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"})
_CACHE_BYTES = _CACHE.encode()
_JSON = b"application/json; charset=utf-8"
_JWKS_TYPE = f"{JWKS_MEDIA_TYPE}; charset=utf-8".encode()
_jwks_etag: tuple[bytes, bytes] = (b"", b"")


def document_bytes(app: Any, path: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(body, ETag, content type, Cache-Control) of a published document, for the fast path
    (server/dispatch.py): the same bytes the routes below answer."""
    global _jwks_etag
    resources = app.state.resources
    if path == JWKS_PATH:
        body = resources.keyring.jwks()
        cached_body, etag = _jwks_etag
        if body is not cached_body:
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'.encode()
            _jwks_etag = (body, etag)
        return body, etag, _JWKS_TYPE, _CACHE_BYTES
    document = _metadata_of(app, resources.settings)
    return document.body, document.etag.encode(), _JSON, _CACHE_BYTES
