"""The explorer's web side: a WSGI app (Werkzeug) serving one page, its static files and a JSON API over
:class:`~yamnet_beam.explore.session.Explorer`, and the server that runs it.

Safe by default: every request needs the session's random token (from the printed URL, kept in a
same-site cookie; POSTs must also send it in ``X-Token``), the Host header must name this machine (no DNS
rebinding), audio and pictures are cut only from paths files/ lists, and the page builds its DOM with
``textContent`` only (a file name is never markup).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
from importlib import resources
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from yamnet_beam.errors import UserError
from yamnet_beam.explore.session import PAGE, Explorer, NotServed

_LOG = logging.getLogger(__name__)
COOKIE = "yamnet_beam_token"
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
MAX_UPLOAD = 50 * 1024 * 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; media-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _host_name(host_header: str) -> str:
    """``[::1]:8000`` -> ``::1``; ``localhost:8000`` -> ``localhost``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def host_allowed(host_header: str | None, bound: str) -> bool:
    """Loopback names always; when bound elsewhere (``--host``), also IP literals (never a DNS name that could
    be rebound to this machine) and the bound name itself."""
    if not host_header:
        return False
    name = _host_name(host_header)
    if name in LOOPBACK_NAMES:
        return True
    if bound in LOOPBACK_NAMES:
        return False
    if name == bound.lower():
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _number(request: Request, key: str, default: float | None = None) -> float | None:
    v = request.args.get(key)
    if v in (None, ""):
        return default
    try:
        return float(v)
    except ValueError as e:
        raise UserError(f"{key} must be a number, got {v!r}") from e


class ExploreApp:
    """WSGI callable; ``token`` is the session's secret."""

    def __init__(self, explorer: Explorer, token: str | None = None, bound: str = "127.0.0.1"):
        self.ex = explorer
        self.token = token or secrets.token_urlsafe(24)
        self.bound = bound
        self.urls = Map(
            [
                Rule("/", endpoint="index"),
                Rule("/static/<name>", endpoint="static"),
                Rule("/api/classes", endpoint="classes"),
                Rule("/api/search", endpoint="search"),
                Rule("/api/upload", endpoint="upload", methods=["POST"]),
                Rule("/api/audio", endpoint="audio"),
                Rule("/api/spectrogram", endpoint="spectrogram"),
                Rule("/api/label", endpoint="label", methods=["POST"]),
                Rule("/api/labels.csv", endpoint="labels_csv"),
                Rule("/api/train", endpoint="train", methods=["GET", "POST"]),
                Rule("/api/reranked", endpoint="reranked"),
                Rule("/api/raven", endpoint="raven"),
            ]
        )

    # ---- the gate

    def _authorised(self, request: Request) -> bool:
        given = request.headers.get("X-Token") if request.method == "POST" else None
        if request.method != "POST":
            given = request.args.get("token") or request.cookies.get(COOKIE)
        return bool(given) and secrets.compare_digest(given.encode(), self.token.encode())

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_UPLOAD
        response = self.respond(request)
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response(environ, start_response)

    def respond(self, request: Request) -> Response:
        if not host_allowed(request.host, self.bound):
            return Response("forbidden host\n", status=403, mimetype="text/plain")
        if not self._authorised(request):
            return Response("missing or wrong token: open the URL the explorer printed\n", 403, mimetype="text/plain")
        try:
            endpoint, values = self.urls.bind_to_environ(request.environ).match()
            response = getattr(self, f"on_{endpoint}")(request, **values)
        except NotServed as e:
            response = _json({"error": str(e)}, 404)
        except UserError as e:
            response = _json({"error": str(e)}, 400)
        except HTTPException as e:
            return e.get_response()
        if request.args.get("token"):  # first visit: keep the token in a cookie for the page's images and audio
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response

    # ---- pages

    def on_index(self, request: Request) -> Response:
        html = resources.files("yamnet_beam.explore").joinpath("static/index.html").read_text("utf-8")
        return Response(html.replace("{{TOKEN}}", self.token), mimetype="text/html")

    def on_static(self, request: Request, name: str) -> Response:
        if name not in STATIC:
            raise NotFound()
        body = resources.files("yamnet_beam.explore").joinpath(f"static/{name}").read_bytes()
        return Response(body, mimetype=STATIC[name])

    # ---- API

    def on_classes(self, request: Request) -> Response:
        return _json(self.ex.classes() | {"output": self.ex.out.uri, "page": PAGE})

    def on_search(self, request: Request) -> Response:
        kind, text = request.args.get("kind", "class"), (request.args.get("q") or "").strip()
        offset = int(_number(request, "offset", 0) or 0)
        if not text:
            raise UserError("type a class name or an example (PATH:FRAME or FILE:SECONDS)")
        if kind == "class":
            return _json(self.ex.search_class(text, _number(request, "threshold", 0.0) or 0.0, offset))
        if kind == "example":
            return _json(self.ex.search_example(text, offset))
        raise UserError(f"kind must be class or example, got {kind!r}")

    def on_upload(self, request: Request) -> Response:
        data = request.get_data(cache=False)
        if not data:
            raise UserError("the upload is empty")
        return _json({"query": self.ex.upload(request.args.get("name", "clip"), data)})

    def _window(self, request: Request) -> tuple[str, float, float]:
        path = request.args.get("path") or ""
        start, end = _number(request, "start", None), _number(request, "end", None)
        if start is None or end is None or not 0 <= start < end:
            raise UserError("start and end must be seconds with 0 <= start < end")
        return self.ex.served(path), start, end

    def on_audio(self, request: Request) -> Response:
        return Response(self.ex.audio(*self._window(request)), mimetype="audio/wav")

    def on_spectrogram(self, request: Request) -> Response:
        return Response(self.ex.spectrogram(*self._window(request)), mimetype="image/png")

    def on_label(self, request: Request) -> Response:
        d = _body(request)
        try:
            start, end = float(d["start_s"]), float(d["end_s"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError("a label needs start_s and end_s in seconds") from e
        self.ex.add_label(str(d.get("path", "")), start, end, str(d.get("class", "")), str(d.get("label", "")),
                          str(d.get("query", "")))  # fmt: skip
        return _json({"ok": True})

    def on_labels_csv(self, request: Request) -> Response:
        return Response(
            self.ex.labels_csv(),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
        )

    def on_train(self, request: Request) -> Response:
        if request.method == "POST":
            d = _body(request)
            return _json(self.ex.start_training(str(d.get("class", "")), str(d.get("mode", "top"))))
        return _json(self.ex.job)

    def on_reranked(self, request: Request) -> Response:
        offset = int(_number(request, "offset", 0) or 0)
        return _json(self.ex.reranked(offset, mode=request.args.get("mode") or None))

    def on_raven(self, request: Request) -> Response:
        text = self.ex.raven(request.args.get("class") or "", _number(request, "threshold", None))
        return Response(
            text,
            mimetype="text/tab-separated-values",
            headers={"Content-Disposition": 'attachment; filename="selections.txt"'},
        )


def _body(request: Request) -> dict[str, Any]:
    try:
        d = json.loads(request.get_data(cache=False) or b"{}")
    except ValueError as e:
        raise UserError("the request body must be JSON") from e
    if not isinstance(d, dict):
        raise UserError("the request body must be a JSON object")
    return d


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, default=str), status=status, mimetype="application/json")


def serve(app: ExploreApp, host: str = "127.0.0.1", port: int = 0, ready=None) -> None:
    """Runs until Ctrl-C; ``ready(url)`` is called once the socket listens (the URL with the token)."""
    from werkzeug.serving import make_server

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # one line per request only with -v
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, app, threaded=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{server.server_port}/?token={app.token}"
    if ready:
        ready(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
