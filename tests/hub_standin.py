"""A loopback stand-in for the Hugging Face endpoints that `huggingface_hub.hf_hub_download` calls.

`hf_hub_download` (huggingface_hub 0.23 to 2.x) makes two requests per file:

- `HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}`: needs `X-Repo-Commit`, an `ETag` (or
  `X-Linked-Etag`) and the size (`Content-Length`, or `X-Linked-Size` on a redirect). A redirect to
  another host is not followed: that is how the real hub hands large (LFS) files to its CDN.
- `GET` of that URL, or of the redirect's `Location`, streaming the bytes; after a dropped connection it
  resumes with `Range: bytes=N-`.

Errors follow the hub's `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).
The server binds 127.0.0.1 on a free port, records every request, and stops when its context exits or
after `max_seconds`, whichever comes first.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

CDN_PREFIX = "/_cdn/"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    repo_id: str | None  # None for a path that names no file
    filename: str | None
    range: str | None


@dataclass
class _Fault:
    kind: str  # "status" or "truncate"
    method: str | None  # None: any method
    status: int
    times: int | None  # None: every time


def commit_of(repo_id: str) -> str:
    """The fixed 40-hex commit id the stand-in reports for a repo."""
    return hashlib.sha1(repo_id.encode()).hexdigest()


class HubStandIn:
    """Serves `repos` ({repo_id: {path in repo: bytes}}) the way the hub's resolve endpoint does.

    With `lfs=True`, resolve answers 302 to a "CDN" on `localhost` (another host name for the same
    loopback server), with `X-Linked-Etag`/`X-Linked-Size`, like the hub does for LFS files.
    """

    def __init__(self, repos: Mapping[str, Mapping[str, bytes]], *, lfs: bool = False, max_seconds: float = 60.0):
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.lfs = lfs
        self.requests: list[Request] = []
        self._faults: dict[tuple[str, str], _Fault] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._deadline = threading.Timer(max_seconds, self.stop)
        self._deadline.daemon = True
        self._stopped = False

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The endpoint to use as HF_ENDPOINT."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubStandIn:
        self._thread.start()
        self._deadline.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._deadline.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- fault injection -------------------------------------------------------------------------------------

    def fail(self, repo_id: str, filename: str, status: int = 500, method: str | None = "GET",
             times: int | None = None) -> None:
        """Answer `status` to requests for this file (`method` None: HEAD and GET), `times` times or always."""
        self._faults[(repo_id, filename)] = _Fault("status", method, status, times)

    def truncate(self, repo_id: str, filename: str, times: int | None = None) -> None:
        """Send the full Content-Length but only half the bytes, then drop the connection."""
        self._faults[(repo_id, filename)] = _Fault("truncate", "GET", 0, times)

    def _take_fault(self, repo_id: str, filename: str, method: str) -> _Fault | None:
        with self._lock:
            fault = self._faults.get((repo_id, filename))
            if fault is None or (fault.method is not None and fault.method != method):
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault

    # ---- what was asked --------------------------------------------------------------------------------------

    def requested_files(self, method: str | None = None) -> set[tuple[str, str]]:
        """(repo_id, filename) of every file request, optionally only those with `method`."""
        return {(r.repo_id, r.filename) for r in self.requests
                if r.filename is not None and (method is None or r.method == method)}

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _handler_for(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so no keep-alive thread outlives a test
        protocol_version = "HTTP/1.0"

        def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
            pass

        def do_HEAD(self):
            self._serve(body=False)

        def do_GET(self):
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = urlsplit(self.path).path
            parsed = _parse(path)
            repo_id, revision, filename = parsed if parsed else (None, None, None)
            hub._record(Request(self.command, path, repo_id, filename, self.headers.get("Range")))
            if parsed is None:
                return self._error(404, None, "Not a resolve URL", body)
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", body)
            commit = commit_of(repo_id)
            on_cdn = path.startswith(CDN_PREFIX)
            if not on_cdn and revision not in ("main", commit):
                return self._error(404, "RevisionNotFound", f"Revision {revision} not found", body, commit)
            files = hub.repos[repo_id]
            if filename not in files:
                return self._error(404, "EntryNotFound", f"{filename} not found in {repo_id}", body, commit)
            fault = hub._take_fault(repo_id, filename, self.command)
            if fault is not None and fault.kind == "status":
                return self._error(fault.status, None, f"injected HTTP {fault.status}", body, commit)
            data = files[filename]
            if hub.lfs and not on_cdn:
                return self._redirect_to_cdn(repo_id, filename, data, commit, body)
            self._send_bytes(data, commit, body, truncate=fault is not None and fault.kind == "truncate")

        def _redirect_to_cdn(self, repo_id: str, filename: str, data: bytes, commit: str, body: bool) -> None:
            sha256 = hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{hub.port}{CDN_PREFIX}{repo_id}/{quote(filename)}")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{_git_sha1(data)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send_bytes(self, data: bytes, commit: str, body: bool, truncate: bool) -> None:
            start = _range_start(self.headers.get("Range"))
            if start is not None and start < len(data):
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                part = data[start:]
            else:
                self.send_response(200)
                part = data
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{_git_sha1(data)}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if body:
                self.wfile.write(part[: len(part) // 2] if truncate else part)
                self.wfile.flush()

        def _error(self, status: int, code: str | None, message: str, body: bool, commit: str | None = None):
            payload = message.encode()
            self.send_response(status)
            if code is not None:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit is not None:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

    return Handler


def _parse(path: str) -> tuple[str, str, str] | None:
    """(repo_id, revision, filename) of `/{repo_id}/resolve/{revision}/{filename}` or of a CDN path
    (revision "")."""
    if path.startswith(CDN_PREFIX):
        parts = path[len(CDN_PREFIX):].split("/", 2)
        if len(parts) < 3:
            return None
        return f"{parts[0]}/{parts[1]}", "", unquote(parts[2])
    repo_part, sep, rest = path.lstrip("/").partition("/resolve/")
    revision, _, filename = rest.partition("/")
    if not sep or not repo_part or not filename:
        return None
    return repo_part, unquote(revision), unquote(filename)


def _range_start(header: str | None) -> int | None:
    """Start offset of a `bytes=N-` range (the only form huggingface_hub sends)."""
    if not header or not header.startswith("bytes="):
        return None
    first = header[len("bytes="):].split(",")[0]
    start, _, _ = first.partition("-")
    return int(start) if start.isdigit() else None


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@contextmanager
def hub_standin(repos: Mapping[str, Mapping[str, bytes]], **kwargs) -> Iterator[HubStandIn]:
    """A started stand-in hub, stopped when the block exits."""
    with HubStandIn(repos, **kwargs) as hub:
        yield hub
