"""A loopback Hugging Face Hub for tests: the routes and headers the real huggingface_hub client uses.

Serves on 127.0.0.1 only. Routes:
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: bytes with ``Range`` (206 + ``Content-Range``), ``ETag``,
  ``X-Repo-Commit``, ``X-Linked-Etag`` / ``X-Linked-Size`` (LFS files: the etag is the sha256);
  ``X-Error-Code`` on 401/404 (``GatedRepo``, ``RepoNotFound``, ``EntryNotFound``), as the Hub sends.
- ``GET /api/models/{repo}[/revision/{rev}]`` (``blobs=True`` adds sizes and LFS sha256 to siblings),
  ``GET /api/models/{repo}/tree/{rev}[/{path}]``, ``POST /api/models/{repo}/paths-info/{rev}``,
  ``GET /api/models?search=&filter=`` (the search API).

Failure knobs, for the downloader's tests: ``drop_after[path] = n`` closes the connection after ``n``
body bytes of the next full-or-ranged GET of ``path`` (once); ``lie_sha[path]`` announces a wrong
sha256; ``stats`` counts bytes served per path.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    commit: str
    gated: bool = False
    tags: list[str] = field(default_factory=lambda: ["gguf"])
    downloads: int = 0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """``with FakeHub() as hub: hub.add_repo(...); os.environ["HF_ENDPOINT"] = hub.url``."""

    def __init__(self, token: str = "hf_test_token") -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.token = token
        self.drop_after: dict[str, int] = {}
        self.lie_sha: dict[str, str] = {}
        self.stats: dict[str, int] = defaultdict(int)
        self.range_requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, gated: bool = False,
                 downloads: int = 0) -> FakeRepo:
        commit = hashlib.sha1((repo_id + "|".join(sorted(files))).encode()).hexdigest()
        repo = FakeRepo(repo_id, dict(files), commit, gated=gated, downloads=downloads)
        self.repos[repo_id] = repo
        return repo

    def sha256_of(self, repo_id: str, path: str) -> str:
        return self.lie_sha.get(path) or _sha(self.repos[repo_id].files[path])

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def file_entry(self, repo: FakeRepo, path: str, *, tree: bool) -> dict[str, Any]:
        data = repo.files[path]
        sha = self.sha256_of(repo.repo_id, path)
        lfs = {"oid": sha, "size": len(data), "pointerSize": 134} if tree else {
            "sha256": sha, "size": len(data), "pointerSize": 134}
        key = "path" if tree else "rfilename"
        entry: dict[str, Any] = {key: path, "size": len(data), "lfs": lfs}
        entry["oid" if tree else "blobId"] = _git_oid(data)
        if tree:
            entry["type"] = "file"
        return entry


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API_MODEL = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_API_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_API_PATHS = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)$")


class _Handler(BaseHTTPRequestHandler):
    server_hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    # -- plumbing -----------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              *, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str, message: str, *, head: bool = False,
               extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json",
                   **(extra or {})}
        self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

    def _repo(self, repo_id: str, *, head: bool = False) -> FakeRepo | None:
        hub = self.server_hub
        repo = hub.repos.get(unquote(repo_id))
        if repo is None:
            # The Hub answers 401 for a missing repo when the caller is anonymous.
            status = 404 if self._authorized() else 401
            self._error(status, "RepoNotFound", "Repository not found", head=head)
            return None
        if repo.gated and not self._authorized():
            self._error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted.", head=head)
            return None
        return repo

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server_hub.token}"

    # -- routes -------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        url = urlparse(self.path)
        m = _API_PATHS.match(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if not m:
            self._error(404, "NotFound", "no such route")
            return
        repo = self._repo(m["repo"])
        if repo is None:
            return
        paths = form.get("paths", [])
        self._json([self.server_hub.file_entry(repo, p, tree=True) for p in paths if p in repo.files])

    def _route(self, *, head: bool) -> None:
        url = urlparse(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if m := _RESOLVE.match(url.path):
            self._resolve(m["repo"], unquote(m["rev"]), unquote(m["path"]), head=head)
        elif m := _API_TREE.match(url.path):
            repo = self._repo(m["repo"])
            if repo is not None:
                prefix = unquote(m["path"] or "")
                files = [f for f in sorted(repo.files) if f.startswith(prefix)]
                self._json([self.server_hub.file_entry(repo, f, tree=True) for f in files])
        elif m := _API_MODEL.match(url.path):
            repo = self._repo(m["repo"])
            if repo is not None:
                self._json(self._model_json(repo, blobs=query.get("blobs") == ["True"]))
        elif path == "/api/models":
            self._search(query)
        else:
            self._error(404, "NotFound", "no such route", head=head)

    def _model_json(self, repo: FakeRepo, *, blobs: bool) -> dict[str, Any]:
        hub = self.server_hub
        siblings = [hub.file_entry(repo, f, tree=False) if blobs else {"rfilename": f}
                    for f in sorted(repo.files)]
        return {"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit, "private": False,
                "gated": "manual" if repo.gated else False, "tags": repo.tags, "downloads": repo.downloads,
                "likes": 0, "siblings": siblings}

    def _search(self, query: dict[str, list[str]]) -> None:
        text = (query.get("search") or [""])[0].lower()
        wanted = set(query.get("filter") or [])
        limit = int((query.get("limit") or ["1000"])[0])
        found = [r for r in self.server_hub.repos.values()
                 if text in r.repo_id.lower() and wanted <= set(r.tags)]
        found.sort(key=lambda r: -r.downloads)
        self._json([{"id": r.repo_id, "modelId": r.repo_id, "downloads": r.downloads, "likes": 0,
                     "tags": r.tags, "gated": "manual" if r.gated else False} for r in found[:limit]])

    def _resolve(self, repo_id: str, rev: str, path: str, *, head: bool) -> None:
        hub = self.server_hub
        repo = self._repo(repo_id, head=head)
        if repo is None:
            return
        if rev not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", "Invalid rev id", head=head)
            return
        if path not in repo.files:
            self._error(404, "EntryNotFound", "Entry not found", head=head,
                        extra={"X-Repo-Commit": repo.commit})
            return
        data = repo.files[path]
        sha = hub.sha256_of(repo.repo_id, path)
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{_git_oid(data)}"',
                   "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        start, end, status = 0, len(data) - 1, 200
        if rng := self.headers.get("Range"):
            m = re.match(r"bytes=(\d+)-(\d*)$", rng)
            if not m or int(m[1]) >= len(data):
                self._error(416, "RangeNotSatisfiable", "bad range", head=head,
                            extra={"Content-Range": f"bytes */{len(data)}"})
                return
            start, end, status = int(m[1]), min(int(m[2] or len(data) - 1), len(data) - 1), 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        body = data[start:end + 1]
        with hub.lock:
            hub.range_requests.append((path, rng))
            drop = None if head else hub.drop_after.pop(path, None)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        sent = body if drop is None else body[:drop]
        with hub.lock:  # counted before sending: the client may read the stats as soon as it has the bytes
            hub.stats[path] += len(sent)
        self.wfile.write(sent)
        if drop is not None:
            # The full body was announced, part of it sent; hang up: a dropped connection mid-file.
            self.wfile.flush()
            self.close_connection = True


def use_fake_hub(monkeypatch: Any, tmp_path: Any, hub: FakeHub, *, token: str | None = None) -> None:
    """Point huggingface_hub and tokrace at ``hub`` and at tmp dirs; nothing touches the user's dirs."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setenv("TOKRACE_HOME", str(tmp_path / "tokrace"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # conftest makes every test offline; these tests talk to the loopback hub only.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub read these at import time; the token file must not be the user's.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)
