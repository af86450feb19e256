"""The emulator's HTTPS server: /api/api_version, REST 1.x and REST 2.x over one Array."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from .array import Array
from .errors import ApiError
from .http import Request, Response
from .rest1 import Rest1
from .rest2 import Rest2

log = logging.getLogger(__name__)

REST1_VERSIONS = [f"1.{i}" for i in range(20)]
# py-pure-client has no modules for 2.12 and 2.18: never advertise them.
REST2_ALL = [f"2.{i}" for i in range(37) if i not in (12, 18)]
PATH_RE = re.compile(r"^/api/(\d+\.\d+)/(.*)$")


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, array: Array, host: str, port: int, cert: str, key: str,
                 rest1: bool = True, rest2_max: str | None = "2.36"):
        super().__init__((host, port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.array = array
        self.rest1 = Rest1(array)
        self.rest2 = Rest2(array)
        self.versions = (REST1_VERSIONS if rest1 else []) + (
            [v for v in REST2_ALL if rest2_max and _vt(v) <= _vt(rest2_max)])

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="emulator-http", daemon=True)
        t.start()
        return t


def _vt(v: str) -> tuple[int, int]:
    major, minor = v.split(".")
    return int(major), int(minor)


class Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without NODELAY each call waits ~40 ms for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        try:
            resp = self.route(method)
        except Exception as exc:  # never leave the client without an answer
            log.exception("internal error on %s %s", method, self.path)
            resp = Response(500, {"errors": [{"message": f"Internal error: {exc}"}]})
        self.reply(resp)

    def route(self, method: str) -> Response:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        if url.path == "/api/api_version":
            return Response(200, {"version": self.server.versions})
        m = PATH_RE.match(url.path)
        if not m:
            return Response(404, {"errors": [{"message": f"Unknown path: {url.path}"}]})
        version, path = m.groups()
        if version not in self.server.versions:
            status = 450 if version.startswith("1.") else 404
            return Response(status, {"errors": [{"message": f"REST API version {version} is not supported."}]})
        front = self.server.rest1 if version.startswith("1.") else self.server.rest2
        try:
            body = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            return front.error(ApiError("Request body is not valid JSON."))
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        req = Request(method, version, unquote(path.rstrip("/")), query, body, headers)
        try:
            return front.handle(req)
        except ApiError as err:
            return front.error(err)

    def reply(self, resp: Response) -> None:
        data = resp.encode()
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        rid = self.headers.get("X-Request-ID")
        if rid:
            self.send_header("X-Request-ID", rid)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
