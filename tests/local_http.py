"""A threaded HTTP server on 127.0.0.1 for download tests: serves bytes from memory, honours Range
requests, records every request, and can drop the connection after a number of bytes."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalFiles:
    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.requests: list[dict] = []  # {"path", "range", "sent"}
        self.drop_after: dict[str, int] = {}  # path -> bytes to send before closing, once
        self.ignore_range = False
        files_ref = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                record = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
                files_ref.requests.append(record)
                data = files_ref.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                match = re.match(r"bytes=(\d+)-$", record["range"] or "")
                if match and not files_ref.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                limit = files_ref.drop_after.pop(self.path, None)
                if limit is not None:
                    body = body[:limit]
                # Recorded before writing: the client may finish (and the test look) before this thread resumes.
                record["sent"] = len(body)
                self.wfile.write(body)
                if limit is not None:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> "LocalFiles":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
