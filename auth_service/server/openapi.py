"""OpenAPI wiring: the error envelope on every operation, Swagger UI 5 served from the app."""

from __future__ import annotations

import dataclasses
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
import swagger_ui
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OpenAPIType, Reference, Schema, SecurityScheme
from litestar.static_files import create_static_files_router

from auth_service.domain.users.policy import MAX_PASSWORD_BYTES, PasswordPolicy
from auth_service.domain.users.schemas import new_password_fields
from auth_service.lib.http import ONE_OF_BODIES, OPTIONAL_BODY, STRICT_BODIES

__all__ = [
    "DOCS_ASSETS_PATH",
    "docs_assets_router",
    "document_one_of_bodies",
    "document_password_policy",
    "mark_optional_bodies",
    "openapi_config",
]

DOCS_ASSETS_PATH = "/docs-assets"
_SWAGGER_STATIC = Path(swagger_ui.__file__).parent / "static"


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


_ITEM_CONSTRAINTS = {"pattern": "pattern", "minLength": "min_length", "maxLength": "max_length"}


def _document_item_constraints(component: Any, struct: type) -> None:
    """Litestar drops the constraints of a list's items (`list[Annotated[str, Meta(pattern=…)]]`
    documents as `{"items": {"type": "string"}}`); msgspec validates them, so copy them from
    msgspec's own schema of the Struct."""
    _, definitions = msgspec.json.schema_components([struct])
    own = definitions[struct.__name__]["properties"]
    for name, prop in (component.properties or {}).items():
        items = own.get(name, {}).get("items")
        if not isinstance(items, dict):
            continue
        for schema in (prop, *(getattr(prop, "one_of", None) or ())):
            target = getattr(schema, "items", None)
            for key, attribute in _ITEM_CONSTRAINTS.items():
                if target is not None and key in items and getattr(target, attribute, None) is None:
                    setattr(target, attribute, items[key])


def mark_optional_bodies(app: Litestar) -> None:
    """Document the bodies of `opt={OPTIONAL_BODY: True}` handlers as optional, as they are, and
    the strict ones (lib/http.strict_body) as refusing unknown fields, as they do, with the
    constraints of their lists' items."""
    components = app.openapi_schema.components.schemas or {}
    for name, struct in STRICT_BODIES.items():
        if name in components:
            components[name].additional_properties = False  # type: ignore[union-attr]
            _document_item_constraints(components[name], struct)
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not handler.opt.get(OPTIONAL_BODY):
                continue
            for method in handler.http_methods:
                operation = getattr(paths[route.path], method.lower(), None)
                if operation is not None and operation.request_body is not None:
                    operation.request_body.required = False  # type: ignore[union-attr]


def _plain(prop: Any) -> Any:
    """An optional field's schema as Litestar writes it (`oneOf: [{type: string}]` beside the
    constraints) as the plain one it is (`type: string` with them)."""
    one_of = getattr(prop, "one_of", None)
    if not one_of or len(one_of) != 1 or getattr(one_of[0], "type", None) is None:
        return prop
    return dataclasses.replace(prop, one_of=None, type=one_of[0].type)


def document_one_of_bodies(app: Litestar) -> None:
    """Replace each `one_of_fields` body's schema (one object whose alternatives are all optional,
    as Litestar documents the Struct) by what it takes: a `oneOf` of objects, each with the
    always-present fields and exactly one alternative, nothing else."""
    components = app.openapi_schema.components.schemas or {}
    for name, (always, alternatives) in ONE_OF_BODIES.items():
        schema = components.get(name)
        if schema is None:
            continue
        properties = {field: _plain(prop) for field, prop in (schema.properties or {}).items()}  # type: ignore[union-attr]
        for field, prop in properties.items():
            if getattr(prop, "type", None) == OpenAPIType.OBJECT:
                # An object field (a passkey's assertion) is its own component, referenced from
                # its branch: inline, generated clients make its model twice under one name.
                own = "".join(part.title() for part in f"{name}_{field}".split("_"))
                components[own] = dataclasses.replace(prop, title=own)
                properties[field] = Reference(ref=f"#/components/schemas/{own}")
        branches: list[Schema | Any] = [
            Schema(
                type=OpenAPIType.OBJECT,
                properties={field: properties[field] for field in (*always, alternative)},
                required=[*always, alternative],
                additional_properties=False,
                # Unique across components: generated clients name a model after its title.
                title=f"{name}_{alternative}",
            )
            for alternative in alternatives
        ]
        described = schema.description  # type: ignore[union-attr]
        components[name] = Schema(one_of=branches, description=described, title=name)


def document_password_policy(app: Litestar, policy: PasswordPolicy) -> None:
    """Give every field that sets a password the policy's length bounds in the document.

    They are the configured policy's (PASSWORD_MIN_LENGTH), known only once settings are read,
    so the Structs cannot carry them; the policy checks them itself (to name the reason), and
    the document says the same. 1024 bytes is at most 1024 characters: the document's bound
    is the tightest a schema can say (`maxLength` counts characters).
    """
    components = app.openapi_schema.components.schemas or {}
    for name, struct in STRICT_BODIES.items():
        schema = components.get(name)
        if schema is None:
            continue
        properties = schema.properties or {}  # type: ignore[union-attr]
        for field in new_password_fields(struct):
            properties[field].min_length = policy.min_length  # type: ignore[union-attr]
            properties[field].max_length = MAX_PASSWORD_BYTES  # type: ignore[union-attr]


def docs_assets_router() -> Router:
    return create_static_files_router(
        path=DOCS_ASSETS_PATH, directories=[_SWAGGER_STATIC], include_in_schema=False, name="docs-assets"
    )
