"""The rating web app (Starlette; ``dermsynth vtt serve`` runs it under uvicorn).

Routes: ``/r/{token}`` (the rating page), ``/api/{token}/state``, ``/api/{token}/image/{id}``,
``POST /api/{token}/answer`` and the page's own script and style sheet. There is no index, no listing and
no file path anywhere: images are reached only through the study's opaque ids, and only those of the
token's own list. Refusals are short JSON errors (404 unknown token, 403 image not in the list, 409 out of
order or not revisable, 410 viewing time over, 422 bad answer); database work runs in the thread pool.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dermsynth.vtt.store import Refused, Study

MAX_BODY = 4096  # bytes of an answer's JSON body

_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",  # the token is in the URL: never send it to another site
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


def _asset(name: str) -> str:
    return resources.files("dermsynth.vtt").joinpath("static", name).read_text(encoding="utf-8")


class _SecurityHeaders:
    """Pure ASGI middleware adding :data:`_HEADERS` to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in _HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(study: Study | str | Path) -> Starlette:
    """The ASGI app for one study file."""
    study = study if isinstance(study, Study) else Study(study)
    page = _asset("rate.html")
    assets = {"vtt.js": (_asset("vtt.js"), "text/javascript; charset=utf-8"),
              "vtt.css": (_asset("vtt.css"), "text/css; charset=utf-8")}
    message_page = ("<!doctype html><html><head><meta charset='utf-8'><title>Visual Turing test</title>"
                    "<link rel='stylesheet' href='/static/vtt.css'></head><body><main class='message'>"
                    "<h1>{title}</h1><p>{text}</p></main></body></html>")

    async def index(request: Request) -> Response:
        return HTMLResponse(message_page.format(title="Visual Turing test",
                                                text="Open the personal link you were given to take part."),
                            status_code=404)

    async def rate_page(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            await run_in_threadpool(study.rater, token)
        except Refused:
            return HTMLResponse(message_page.format(title="Link not found",
                                                    text="This invitation link is not valid. Check that you "
                                                         "copied all of it."), status_code=404)
        body = page.replace("{{TOKEN}}", html.escape(token, quote=True))
        body = body.replace("{{TITLE}}", html.escape(study.settings.title))
        return HTMLResponse(body)

    async def state(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(study.state, request.path_params["token"]))

    async def image(request: Request) -> Response:
        png = await run_in_threadpool(study.image, request.path_params["token"], request.path_params["image_id"])
        return Response(png, media_type="image/png")

    async def answer(request: Request) -> Response:
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            raise Refused(413, "request too large")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise Refused(413, "request too large")
        try:
            data = json.loads(body)
        except ValueError:
            raise Refused(400, "the body must be JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "the body must be a JSON object")
        new_state = await run_in_threadpool(study.answer, request.path_params["token"], data.get("image"),
                                            data.get("answer"), data.get("confidence"), data.get("elapsed_ms"))
        return JSONResponse(new_state)

    async def refused(request: Request, exc: Refused) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    routes = [
        Route("/", index),
        Route("/r/{token}", rate_page),
        Route("/api/{token}/state", state),
        Route("/api/{token}/image/{image_id}", image),
        Route("/api/{token}/answer", answer, methods=["POST"]),
    ]
    routes += [Route(f"/static/{name}", _fixed(text, media)) for name, (text, media) in assets.items()]
    app = Starlette(routes=routes, exception_handlers={Refused: refused, HTTPException: http_error})
    app.state.study = study
    return _SecurityHeaders(app)


def _fixed(text: str, media: str):
    """An endpoint serving one fixed asset (explicit routes: nothing else under /static exists)."""

    async def endpoint(request: Request) -> Response:
        return Response(text, media_type=media)

    return endpoint
