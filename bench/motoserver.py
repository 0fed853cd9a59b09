"""moto's DynamoDB server in a process of its own, counting the calls it serves by operation and the
time moto itself spent on each (so the scale benchmark can tell moto's cost from the fleet's).

Where it stands: beside the fleet, started by ``bench.procs`` (never imported by the fleet). The worker
processes' boto3 clients cannot be hooked from the benchmark; this server sees every call they make.

    python -m bench.motoserver --port PORT
    GET  /_bench/stats  -> {"calls": {"Scan": 12, ...}, "seconds": {"Scan": 3.1, ...}}
    POST /_bench/reset  -> counters back to zero
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

StartResponse = Callable[..., Any]


class CountingApp:
    """A WSGI wrapper: counts DynamoDB operations (``X-Amz-Target``) and moto's time on each."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.calls: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_bench/stats":
            with self.lock:
                body = {
                    "calls": dict(self.calls),
                    "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
                }
            return self._json(start_response, body)
        if path == "/_bench/reset":
            with self.lock:
                self.calls.clear()
                self.seconds.clear()
            return self._json(start_response, {"reset": True})
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2] or "other"
        began = time.perf_counter()
        body = list(self.app(environ, start_response))
        elapsed = time.perf_counter() - began
        with self.lock:
            self.calls[operation] += 1
            self.seconds[operation] += elapsed
        return body

    @staticmethod
    def _json(start_response: StartResponse, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
