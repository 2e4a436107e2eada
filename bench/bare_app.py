"""The baseline: a bare Litestar app returning a small JSON object, nothing else."""

from __future__ import annotations

from litestar import Litestar, get


@get("/json")
async def small_json() -> dict[str, object]:
    return {"valid": True, "user_id": "00000000-0000-0000-0000-000000000000", "roles": ["user"]}


app = Litestar([small_json], logging_config=None)
