"""`mnistres serve`: a local web page to draw digits on and browse runs, and the JSON API it uses.

The standard library's threaded HTTP server: nothing to install, and enough for one person's
browser and scripts. Every answer of /api/ is JSON; every error is `{"error": message}` with its
status, never a traceback. What may be read is decided by `library` (only the run directories
found under RUNS_DIR, no link leading out of it) and the routes below (each names the file it
serves); a request's path is never joined to a folder.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import socket
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from mnistres import __version__
from mnistres.errors import ConfigError, MnistresError
from mnistres.serve.library import Library, NotFound
from mnistres.serve.predictor import Predictor
from mnistres.serve.reports import Reports

MAX_UPLOAD_MB = 20.0  # default bound of a request's body: a 48-megapixel phone photo as JPEG fits
REQUEST_SECONDS = 30  # a client that sends nothing for this long is dropped (a thread is not held forever)
LOOPBACK_NAMES = ("localhost",)
# The page loads nothing from elsewhere, and no other site may frame it.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


class HttpError(MnistresError):
    """An answer other than 200, with its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""

    def param(self, name: str, default: Optional[str] = None) -> str:
        value = self.query.get(name, default)
        if value is None:
            raise HttpError(400, f"give ?{name}=")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.query.get(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise HttpError(400, f"?{name}={value!r}: expected 1 or 0")


@dataclass
class Answer:
    """A response: JSON (`document`) or bytes of a type."""

    document: Any = None
    content: bytes = b""
    content_type: str = "application/json"
    status: int = 200


@dataclass
class Route:
    """One address of the API, described for the reference page (`python -m mnistres.cli.reference`)."""

    method: str
    path: str
    help: str
    params: dict[str, str] = field(default_factory=dict)  # query parameter -> what it says
    returns: str = ""  # the answer, in words
    handler: Callable[["Site", Request], Answer] = field(default=lambda site, request: Answer(), repr=False)


@dataclass
class Site:
    """What the server serves: the runs (`library`), their reports, the checkpoints' predictions."""

    library: Library
    reports: Reports
    predictor: Predictor
    default_checkpoint: Optional[Path]  # --checkpoint
    max_upload: int  # bytes
    static: dict[str, bytes]  # the page's files, by name

    def checkpoints(self) -> list[dict[str, Any]]:
        found = self.library.checkpoints()
        if self.default_checkpoint is not None:  # first, under its run's id when it is a served run's
            try:
                given = self.library.checkpoint_id(self.default_checkpoint)
            except ValueError:  # outside the served folder
                given = ""
            listed = next((c for c in found if c["id"] == given), None)
            if listed is not None:
                found.remove(listed)
            found.insert(0, listed or {"id": GIVEN, "run": None, "file": self.default_checkpoint.name,
                                       "status": None, "dataset": None, "best_val_acc": None, "epochs_done": None})
        return found

    def checkpoint_path(self, checkpoint_id: Optional[str]) -> tuple[str, Path]:
        """The checkpoint a request names (the first listed when it names none): its id and file."""
        if checkpoint_id is None:
            found = self.checkpoints()
            if not found:
                raise HttpError(409, "no checkpoint to predict with: the served folder holds no run with best.pt or "
                                     "last.pt (start serve with --checkpoint, or train a run)")
            checkpoint_id = found[0]["id"]
        if checkpoint_id == GIVEN and self.default_checkpoint is not None:
            return checkpoint_id, self.default_checkpoint
        return checkpoint_id, self.library.checkpoint(checkpoint_id)


GIVEN = "--checkpoint"  # the id of the checkpoint named on the command line


# --- the routes ---------------------------------------------------------------------------------------


def _info(site: Site, request: Request) -> Answer:
    return Answer({"version": __version__, "folder": str(site.library.root) if site.library.root else None,
                   "checkpoint": str(site.default_checkpoint) if site.default_checkpoint else None,
                   "max_upload_bytes": site.max_upload})


def _predict(site: Site, request: Request) -> Answer:
    checkpoint_id, checkpoint = site.checkpoint_path(request.query.get("checkpoint"))
    if not request.body:
        raise HttpError(400, "send an image file as the request's body (e.g. curl --data-binary @digit.png)")
    result = site.predictor.predict(checkpoint, request.body, preprocess=request.flag("preprocess", True))
    return Answer({**result, "checkpoint": checkpoint_id})


ROUTES = [
    Route("GET", "/api/info", "What is served: mnistres's version, the runs folder, --checkpoint, the upload bound.",
          returns="`version`, `folder`, `checkpoint`, `max_upload_bytes`.", handler=_info),
    Route("GET", "/api/checkpoints", "The checkpoints to predict with: --checkpoint first, then every served run's "
                                     "best.pt and last.pt, completed runs with the best validation accuracy first.",
          returns="`checkpoints`: a list of `id` (what ?checkpoint= takes), `run`, `file`, `status`, `dataset`, "
                  "`best_val_acc`, `epochs_done`.",
          handler=lambda site, request: Answer({"checkpoints": site.checkpoints()})),
    Route("POST", "/api/predict", "The digit in an image: the body is the file's bytes (PNG, JPEG, BMP, .npy or "
                                  ".npz, as `mnistres predict` reads), at most --max-upload.",
          params={"checkpoint": "a checkpoint id from /api/checkpoints (default: the first listed)",
                  "preprocess": "0: the image is already in MNIST's form (28x28, white on black); default 1"},
          returns="`digit`, `confidence`, `probabilities` (10 floats), `pixels` (the 28x28 image the model saw, "
                  "0-255), `epoch`, `device`, `preprocess`, `checkpoint`, and `images` (one object per image the "
                  "file holds, each with `name` and these fields or an `error`). 413 when the body is too large, "
                  "422 when it holds no usable image.",
          handler=_predict),
    Route("GET", "/api/runs", "The runs under the served folder, newest first, as `mnistres runs --json` lists them, "
                              "with the sweep and tune directories among them.",
          returns="`folder`, `settings` (the keys that differ), `runs` (each with its `id`), `groups` (`id`, `kind`: "
                  "sweep or tune, `title`), `refused` (directories not served, with why).",
          handler=lambda site, request: Answer(site.library.listed())),
    Route("GET", "/api/run", "One run: its listing line, config, summary (per-class metrics, confusion matrix) and "
                             "every epoch's metrics; polled while it trains.",
          params={"id": "the run's id from /api/runs"},
          returns="The run's `runs --json` fields, `config`, `summary`, `history`, `checkpoints` (ids), "
                  "`has_mistakes`.",
          handler=lambda site, request: Answer(site.library.detail(request.param("id")))),
    Route("GET", "/api/run/mistakes", "A completed run's most confident mistakes on its validation images, as its "
                                      "mistakes.npz keeps them.",
          params={"id": "the run's id", "count": "how many, most confident first (default 36, at most 500)"},
          returns="`total`, `scored`, `source`, `mistakes` (each `index`, `label`, `predicted`, `confidence`, "
                  "`pixels`).",
          handler=lambda site, request: Answer(site.library.mistakes(request.param("id"),
                                                                     _count(request.param("count", "36"))))),
    Route("GET", "/api/report", "A sweep's or tune's report, as `mnistres report DIR` writes it, in HTML (written "
                                "again when its runs' files change; never into the runs folder).",
          params={"id": "the group's id from /api/runs"},
          returns="`id`, `kind`, `title`, `html` (null while no run has finished: `message` says why), `figures`.",
          handler=lambda site, request: Answer(site.reports.report(request.param("id")))),
    Route("GET", "/api/report/figure", "A figure (PNG) of a report.",
          params={"id": "the group's id", "name": "the figure's file name, as the report's HTML gives it"},
          returns="The PNG.",
          handler=lambda site, request: Answer(content=site.reports.figure(request.param("id"), request.param("name")),
                                               content_type="image/png")),
]


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise HttpError(400, f"?count={text!r}: expected a whole number") from None
    if not 1 <= count <= 500:
        raise HttpError(400, f"?count={count}: expected 1 to 500")
    return count


# --- HTTP -----------------------------------------------------------------------------------------------


def static_files() -> dict[str, bytes]:
    """The page's files shipped in the package (mnistres/serve/static), by name."""
    folder = resources.files("mnistres.serve") / "static"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir()
            if entry.is_file() and Path(entry.name).suffix in STATIC_TYPES}


def make_handler(site: Site, loopback: bool) -> type[http.server.BaseHTTPRequestHandler]:
    routes = {(route.method, route.path): route for route in ROUTES}

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = f"mnistres/{__version__}"
        protocol_version = "HTTP/1.1"
        timeout = REQUEST_SECONDS

        def do_GET(self) -> None:  # noqa: N802 - the standard library's names
            self._answer("GET")

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer("HEAD")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._answer("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._answer("DELETE")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: one line per error only
            pass

        def _answer(self, method: str) -> None:
            try:
                answer = self._route(method)
            except HttpError as error:
                answer = Answer({"error": str(error)}, status=error.status)
            except NotFound as error:
                answer = Answer({"error": str(error)}, status=404)
            except MnistresError as error:  # an unusable image or checkpoint (Unusable, CheckpointError, ...)
                answer = Answer({"error": str(error)}, status=422)
            except Exception as error:  # noqa: BLE001 - a bug answers as JSON; the traceback goes to the log only
                first = (str(error).strip().splitlines() or [""])[0]
                print(f"mnistres serve: {method} {self.path}: {type(error).__name__}: {first}", file=sys.stderr)
                if os.environ.get("MNISTRES_DEBUG"):
                    traceback.print_exc()
                answer = Answer({"error": f"internal error ({type(error).__name__}): {first}"}, status=500)
            self._send(answer, head=method == "HEAD")

        def _route(self, method: str) -> Answer:
            if loopback and not _loopback_host(self.headers.get("Host", "")):
                # A page elsewhere must not reach this one through a name it points at 127.0.0.1 (DNS rebinding).
                raise HttpError(403, "this server answers only to localhost and 127.0.0.1 addresses")
            parts = urlsplit(self.path)
            path = parts.path
            if method == "HEAD":
                method = "GET"
            if path == "/" or path == "/index.html":
                path = "/static/index.html"
            if path.startswith("/static/"):
                name = path[len("/static/"):]
                if method != "GET":
                    raise HttpError(405, f"{method} is not answered here; use GET")
                if name not in site.static:
                    raise HttpError(404, f"no page file {name!r}")
                return Answer(content=site.static[name], content_type=STATIC_TYPES[Path(name).suffix])
            route = routes.get((method, path))
            if route is None:
                allowed = [m for (m, p) in routes if p == path]
                if allowed:
                    raise HttpError(405, f"{method} is not answered at {path}; use {' or '.join(allowed)}")
                raise HttpError(404, f"nothing at {path} (the API: see /api/info and the docs' serve page)")
            query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
            if method != "POST" and self.headers.get("Content-Length", "0") != "0":
                self.close_connection = True  # a body nobody reads: the connection cannot carry another request
            body = self._body() if method == "POST" else b""
            return route.handler(site, Request(method, path, query, body))

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or self.headers.get("Content-Length") is None:
                self.close_connection = True
                raise HttpError(411, "send the body with a Content-Length (as curl --data-binary @FILE does)")
            if self.headers.get("Content-Type", "").lower().startswith("multipart/"):
                self.close_connection = True
                raise HttpError(415, "send the image file's bytes as the body, not a form (curl --data-binary @FILE, "
                                     "not -F)")
            try:
                length = int(self.headers["Content-Length"])
            except ValueError:
                length = -1
            if length < 0:
                self.close_connection = True
                raise HttpError(400, "Content-Length is not a number of bytes")
            if length > site.max_upload:
                self.close_connection = True  # the body is not read: the connection ends with this answer
                raise HttpError(413, f"the upload is {_megabytes(length)} MB; at most {_megabytes(site.max_upload)} MB "
                                     f"is accepted (serve --max-upload)")
            return self.rfile.read(length)

        def _send(self, answer: Answer, head: bool = False) -> None:
            if answer.document is not None:
                content = json.dumps(answer.document, allow_nan=False, default=str).encode()
            else:
                content = answer.content
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(content)))
                self.send_header("Cache-Control", "no-store")
                for name, value in SECURITY_HEADERS.items():
                    self.send_header(name, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if not head:
                    self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):  # the browser went away: nothing to tell it
                self.close_connection = True

    return Handler


def _megabytes(count: int) -> str:
    """Bytes as megabytes in words: 20,000,000 -> "20", 12,345 -> "0.01"."""
    return f"{count / 1e6:,.2f}".rstrip("0").rstrip(".")


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback (localhost, a.localhost, 127.x.x.x, [::1]), any port."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name) or name.lower().endswith(".localhost")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a request still being answered does not hold up the end
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__(address, handler)


def is_loopback(host: str) -> bool:
    """Whether an address (or localhost) is this machine's loopback; IPv6 with or without brackets."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() in LOOPBACK_NAMES


@dataclass
class Serving:
    """A bound server, ready to run (`url`), and the temporary folder its reports go to."""

    server: Server
    url: str
    site: Site
    workdir: tempfile.TemporaryDirectory

    def close(self) -> None:
        self.server.server_close()
        self.workdir.cleanup()


def start(runs_dir: Optional[Path], checkpoint: Optional[Path], *, host: str = "127.0.0.1", port: int = 8000,
          device: str = "auto", threads: int = 0, max_upload_mb: float = MAX_UPLOAD_MB) -> Serving:
    """Bind the server (port 0: any free port); `serve_forever` on the result's server runs it."""
    workdir = tempfile.TemporaryDirectory(prefix="mnistres-serve-")
    library = Library(runs_dir)
    site = Site(library, Reports(library, Path(workdir.name)), Predictor(device, threads), checkpoint,
                int(max_upload_mb * 1e6), static_files())
    try:
        server = Server((host, port), make_handler(site, is_loopback(host)))
    except OSError as error:
        workdir.cleanup()
        if error.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise ConfigError(f"port {port} on {host} is in use: give another with --port (0: any free port)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    return Serving(server, f"http://{shown}:{bound_port}/", site, workdir)
