"""The HTTP side of ``pydeconv serve``: a Starlette app over :class:`~pydeconv.serve.state.State`.

Routes (docs/SERVE.md): the page and its three static files, and a JSON/PNG API under ``/api``.
The endpoints that compute are plain functions, which Starlette runs in its thread pool, so
several requests are served at once (the engine's ``Net`` is immutable and shared). Every
:class:`~pydeconv.errors.PydeconvError` becomes a 400 answer ``{"error": "..."}``; any other
exception a 500 answer with a one-line JSON message, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pydeconv.errors import PydeconvError
from pydeconv.serve.state import BadRequest, PayloadTooLarge, State

STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_SECURITY = {
    "X-Content-Type-Options": "nosniff",
    # The page loads only its own files and the API's images; nothing from the web.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self' blob:",
}


def _static(name: str) -> bytes:
    return resources.files("pydeconv.serve").joinpath("static").joinpath(name).read_bytes()


def _png(data: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(data, media_type="image/png", headers={**_SECURITY, **(headers or {})})


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=_SECURITY)


def _position(pos: tuple[int, int]) -> dict[str, str]:
    return {"X-Pydeconv-Position": f"{pos[0]},{pos[1]}"}


LOCAL_NAMES = ("127.0.0.1", "localhost")


class HostCheck:
    """ASGI middleware: answer only requests whose Host header names this machine (when the
    server is bound to loopback), so that a web page elsewhere cannot reach it through a DNS name
    it points at 127.0.0.1 (DNS rebinding). ``hosts=None`` lets every Host through."""

    def __init__(self, app: Any, hosts: Sequence[str] | None):
        self.app = app
        self.hosts = None if hosts is None else {h.lower() for h in hosts}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.hosts is not None:
            host = ""
            for key, value in scope.get("headers", []):
                if key == b"host":
                    host = value.decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
            if name not in self.hosts:
                response = _json(
                    {
                        "error": f"this server answers to {', '.join(sorted(self.hosts))} "
                        f"only, not Host {host!r}"
                    },
                    400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    state: State, atlas: Any = None, hosts: Sequence[str] | None = LOCAL_NAMES
) -> Starlette:
    """The app serving ``state`` (and, when given, an :class:`~pydeconv.serve.atlas.Atlas`);
    ``hosts``: the Host header names it answers to (None: any)."""

    def page(request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in STATIC:
            raise HTTPException(404, f"no file {name!r}")
        return Response(_static(name), media_type=STATIC[name], headers=_SECURITY)

    def model(request: Request) -> Response:
        info = state.model_info()
        info["atlas"] = atlas is not None
        return _json(info)

    def images(request: Request) -> Response:
        return _json({"images": state.image_list()})

    async def upload(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (kind.startswith("image/") or kind == "application/octet-stream"):
            # Also what keeps other web sites out: a page elsewhere can only send a form's
            # content types without the browser asking this server first (CORS), and it does not.
            raise BadRequest(
                "send the image's bytes as the body, with Content-Type image/... or "
                f"application/octet-stream (got {kind or 'none'!r})"
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > state.max_upload_bytes:
            raise PayloadTooLarge(
                f"upload of {declared} bytes is past the limit of {state.max_upload_bytes}"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > state.max_upload_bytes:
                raise PayloadTooLarge(f"upload past the limit of {state.max_upload_bytes} bytes")
            chunks.append(chunk)
        name = request.headers.get("x-filename", "")
        return _json(await run_in_threadpool(state.add_upload, b"".join(chunks), name))

    def image_png(request: Request) -> Response:
        return _png(state.input_png(request.path_params["id"]))

    def fmaps(request: Request) -> Response:
        q = request.query_params
        meta, _ = state.fmaps(q.get("image"), q.get("layer"))
        return _json({**meta, "image": q.get("image"), "layer": q.get("layer")})

    def fmaps_png(request: Request) -> Response:
        q = request.query_params
        return _png(state.fmaps(q.get("image"), q.get("layer"))[1])

    def project(request: Request) -> Response:
        q = request.query_params
        data, pos = state.projection_png(
            q.get("image"), q.get("layer"), q.get("channel"), q.get("rule"), q.get("at")
        )
        return _png(data, _position(pos))

    def patch(request: Request) -> Response:
        q = request.query_params
        data, pos = state.patch_png(q.get("image"), q.get("layer"), q.get("channel"), q.get("at"))
        return _png(data, _position(pos))

    def cache(request: Request) -> Response:
        return _json(state.cache_state())

    def atlas_units(request: Request) -> Response:
        if atlas is None:
            raise BadRequest("no atlas: start the server with --atlas DIR")
        q = request.query_params
        return _json(atlas.units_of(state.layer(q.get("layer")), q.get("channel")))

    def atlas_tile(request: Request) -> Response:
        if atlas is None:
            raise BadRequest("no atlas: start the server with --atlas DIR")
        q = request.query_params
        return _png(atlas.tile(state.layer(q.get("layer")), q.get("channel")))

    def detections(request: Request) -> Response:
        q = request.query_params
        return _json(state.detections(q.get("image"), q.get("conf")))

    async def pydeconv_error(request: Request, exc: Exception) -> Response:
        status = 413 if isinstance(exc, PayloadTooLarge) else 400
        return _json({"error": " ".join(str(exc).split())}, status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json({"error": exc.detail}, exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        print(f"pydeconv serve: {request.url.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return _json({"error": f"internal error ({type(exc).__name__})"}, 500)

    routes = [
        Route("/", page),
        Route("/static/{name}", page),
        Route("/api/model", model),
        Route("/api/images", images),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/image/{id}.png", image_png),
        Route("/api/fmaps", fmaps),
        Route("/api/fmaps.png", fmaps_png),
        Route("/api/project", project),
        Route("/api/patch", patch),
        Route("/api/cache", cache),
        Route("/api/atlas", atlas_units),
        Route("/api/atlas/tile", atlas_tile),
        Route("/api/detections", detections),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(HostCheck, hosts=hosts)],
        exception_handlers={
            PydeconvError: pydeconv_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
