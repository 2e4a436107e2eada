"""The docs' two reference tables, generated at build time so they cannot drift from the code.

`configuration.md` holds `<!-- settings -->`, replaced by a table of every declared setting
(`auth_service.settings.describe`); `endpoints.md` holds `<!-- endpoints -->`, replaced by every
operation and schema of the app's own OpenAPI document. MkDocs runs this file as a hook
(`hooks:` in mkdocs.yml); `python -m docs.gen.reference` prints both for a look without a build.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mkdocs runs from its own script directory
    sys.path.insert(0, str(ROOT))

MARKERS = {"configuration.md": "<!-- settings -->", "endpoints.md": "<!-- endpoints -->"}

# Creating the app connects to nothing: these only satisfy the settings' checks.
DUMMY_ENV = {
    "DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "JWT_SECRET_KEY": "docs-build-only-" + "d" * 24,
}


def _cell(text: object) -> str:
    """One table cell: no line breaks, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: object) -> str:
    """Inline code; a pipe inside a code span does not split a table cell."""
    value = str(text)
    return f"`` {value} ``" if "`" in value else f"`{value}`"


# ------------------------------------------------------------------------------ settings


def _default(value: Any) -> str:
    if value == "" or value is None:
        return "—"
    if isinstance(value, bool):
        return _code(str(value).lower())
    return _code(value)


def settings_table() -> str:
    from auth_service.settings import describe

    lines: list[str] = []
    group = None
    for row in describe():
        if row.group != group:
            group = row.group
            lines += ["", f"### {group}", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
        kind = _code(row.type)
        lines.append(f"| `{row.variable}` | {kind} | {_default(row.default)} | {_cell(row.description)} |")
    return "\n".join(lines).strip("\n")


# ------------------------------------------------------------------------------ endpoints


def openapi_document() -> dict[str, Any]:
    from auth_service.app import create_app
    from auth_service.settings import load_settings

    app = create_app(load_settings(env=DUMMY_ENV, env_file=None))
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words, linking named schemas to their section below."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#schema-{name.lower()})"
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            parts = [_type(s) for s in schema[key]]
            return " or ".join(parts)
    kind = schema.get("type")
    if kind == "array":
        return "array of " + _type(schema.get("items", {}))
    if isinstance(kind, list):
        return " or ".join(kind)
    if "enum" in schema:
        return "one of " + ", ".join(_code(v) for v in schema["enum"])
    text = str(kind or "any")
    if "format" in schema:
        text += f" ({schema['format']})"
    return text


def _rules(schema: dict[str, Any]) -> str:
    """The constraints the server checks (Meta on the msgspec Struct), as the document states them."""
    found: dict[str, Any] = {}

    def walk(part: dict[str, Any]) -> None:
        for key in ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "pattern", "default"):
            if key in part and key not in found:
                found[key] = part[key]
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in part.get(key, []):
                if "$ref" not in sub:
                    walk(sub)

    walk(schema)
    words = {
        "minLength": "length ≥",
        "maxLength": "length ≤",
        "minimum": "≥",
        "maximum": "≤",
        "minItems": "items ≥",
        "maxItems": "items ≤",
    }
    shown = []
    for key, value in found.items():
        if key == "pattern":
            shown.append(f"pattern {_code(value)}")
        elif key == "default":
            shown.append(f"default {_code(json.dumps(value))}")
        else:
            number = int(value) if isinstance(value, float) and value.is_integer() else value
            shown.append(f"{words[key]} {number}")
    return "; ".join(shown)


def _fields(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | rules | description |", "|---|---|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        rows.append(
            f"| `{name}` | {_type(field)} | {'yes' if name in required else 'no'} | {_rules(field)} "
            f"| {_cell(field.get('description', ''))} |"
        )
    return rows


def _body_schema(content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    media, value = next(iter(content.items()))
    return media, value.get("schema", {})


def _named(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a body names (directly, or as the one non-null choice), if any."""
    refs = [s["$ref"] for key in ("oneOf", "anyOf", "allOf") for s in schema.get(key, []) if "$ref" in s]
    refs += [schema["$ref"]] if "$ref" in schema else []
    found = schemas.get(_ref_name(refs[0])) if len(refs) == 1 else None
    return found if found and "properties" in found else None


def _operation(method: str, path: str, op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    lines = [f"### {method.upper()} `{path}`", "", f"**{op.get('summary', '')}**", ""]
    if op.get("description"):
        lines += [op["description"], ""]
    security = op.get("security")
    lines += [f"Authentication: {'a Bearer access token' if security else 'none'}.", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["Parameters:", "", "| name | in | type | required | rules | description |", "|---" * 6 + "|"]
        for p in params:
            schema = p.get("schema", {})
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_type(schema)} | {'yes' if p.get('required') else 'no'} "
                f"| {_rules(schema)} | {_cell(p.get('description', ''))} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        media, schema = _body_schema(body["content"])
        need = "required" if body.get("required") else "optional"
        lines += [f"Request body ({need}, `{media}`): {_type(schema)}.", ""]
        fields = _named(schema, schemas)
        if fields is not None:
            lines += [*_fields(fields), ""]
    lines += ["Responses:", "", "| status | body | meaning |", "|---|---|---|"]
    for status, response in sorted(op.get("responses", {}).items()):
        shown = ""
        if response.get("content"):
            media, schema = _body_schema(response["content"])
            shown = f"{_type(schema)} (`{media}`)"
        lines.append(f"| {status} | {shown} | {_cell(response.get('description', ''))} |")
    return [*lines, ""]


def endpoints_reference(document: dict[str, Any] | None = None) -> str:
    document = document or openapi_document()
    by_tag: dict[str, list[str]] = {}
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).extend(_operation(method, path, op, document["components"]["schemas"]))
    info = document["info"]
    lines = [f"{info['title']} {info['version']}, OpenAPI {document['openapi']}.", "", info.get("description", ""), ""]
    for tag, body in by_tag.items():
        lines += [f"## {tag}", "", *body]
    lines += ["## Schemas", ""]
    for name, schema in sorted(document["components"]["schemas"].items()):
        lines += [f"### {name} {{#schema-{name.lower()}}}", ""]
        if schema.get("description"):
            lines += [_cell(schema["description"]), ""]
        if "properties" in schema:
            lines += [*_fields(schema), ""]
        else:
            lines += [f"{_type(schema)}.", ""]
    return "\n".join(lines).strip("\n")


# ------------------------------------------------------------------------------ the hook


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs hook: fill the marker of a reference page; a page that lost its marker fails the build."""
    marker = MARKERS.get(page.file.src_uri)
    if marker is None:
        return markdown
    if marker not in markdown:
        raise ValueError(f"{page.file.src_uri}: the marker {marker} is missing")
    generated = settings_table() if marker == MARKERS["configuration.md"] else endpoints_reference()
    return markdown.replace(marker, generated)


if __name__ == "__main__":
    print(settings_table())
    print(endpoints_reference())
