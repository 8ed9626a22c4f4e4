"""The rating web app (Starlette; ``dermsynth vtt serve`` runs it under uvicorn).

Routes: ``/r/{token}`` (the rating page), ``/api/{token}/state``, ``/api/{token}/image/{id}``,
``POST /api/{token}/start|pause|answer`` and the page's own script and style sheet. There is no index, no
listing and no file path anywhere: images are reached only through the study's opaque ids, and only those of
the token's own list. Refusals are short JSON errors (400 malformed body, 403 image not in the list or a
cross-site post, 404 unknown token, 409 out of order / not served / too soon / not revisable, 410 viewing
time over, 413 body too large, 415 not JSON, 422 bad answer); database work runs in the thread pool.

POST bodies are read chunk by chunk and refused with 413 as soon as they pass :data:`MAX_BODY`, after the
token was checked; a post must be ``application/json`` and, when the browser names an ``Origin``, from this
very host. The access log (``--log-level info``) names the route with the token replaced by ``<token>``.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dermsynth.vtt.store import Refused, Study

MAX_BODY = 4096  # bytes of an answer's JSON body
_TOKEN_IN_PATH = re.compile(r"^/(r|api)/[^/]+")
log = logging.getLogger("uvicorn.error.vtt")  # uvicorn's --log-level applies; its own access log is off

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
    """Pure ASGI middleware adding :data:`_HEADERS` to every response and logging each request (at info, the
    token redacted: uvicorn's own access log is off)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        start = time.perf_counter()

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in _HEADERS.items():
                    headers[key] = value
                if log.isEnabledFor(logging.INFO):
                    log.info("%s %s %d %.1f ms", scope["method"], redact(scope["path"]), message["status"],
                             (time.perf_counter() - start) * 1000)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def redact(path: str) -> str:
    """A request path with the invitation token replaced: /api/<token>/state."""
    return _TOKEN_IN_PATH.sub(lambda m: f"/{m.group(1)}/<token>", path)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number")


async def read_json_body(request: Request) -> dict:
    """The request's JSON object, read chunk by chunk: 415 unless declared JSON, 413 as soon as it passes
    :data:`MAX_BODY` (whatever Content-Length says), 400 for anything but one finite, shallow JSON object."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "the body must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise Refused(413, "request too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refused(413, "request too large")
    try:
        data = json.loads(bytes(body), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise Refused(400, "the body must be one JSON object (finite numbers only)") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object")
    return data


def check_same_origin(request: Request) -> None:
    """403 for a post another site's page makes: a foreign ``Origin`` or ``Sec-Fetch-Site: cross-site``."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise Refused(403, "cross-site request refused")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Refused(403, "cross-site request refused")


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

    async def posted(request: Request) -> dict:
        """Checks every POST passes before its body is used: same origin, a known token, a small JSON body."""
        check_same_origin(request)
        await run_in_threadpool(study.rater, request.path_params["token"])
        return await read_json_body(request)

    async def start(request: Request) -> Response:
        await posted(request)
        return JSONResponse(await run_in_threadpool(study.start, request.path_params["token"]))

    async def pause(request: Request) -> Response:
        data = await posted(request)
        return JSONResponse(await run_in_threadpool(study.pause, request.path_params["token"], data.get("image")))

    async def answer(request: Request) -> Response:
        data = await posted(request)
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
        Route("/api/{token}/start", start, methods=["POST"]),
        Route("/api/{token}/pause", pause, methods=["POST"]),
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
