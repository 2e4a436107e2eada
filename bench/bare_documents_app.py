"""The baseline of the published documents: a bare Litestar app serving the same bytes as our
discovery document and JWK Set (read from BENCH_DISCOVERY_FILE and BENCH_JWKS_FILE at start),
nothing else."""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Response, get

_DISCOVERY = Path(os.environ["BENCH_DISCOVERY_FILE"]).read_bytes()
_JWKS = Path(os.environ["BENCH_JWKS_FILE"]).read_bytes()


@get("/discovery")
async def discovery() -> Response[bytes]:
    return Response(_DISCOVERY, media_type="application/json")


@get("/jwks")
async def jwks() -> Response[bytes]:
    return Response(_JWKS, media_type="application/jwk-set+json")


app = Litestar([discovery, jwks], logging_config=None)
