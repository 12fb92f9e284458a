"""Loopback servers for zoo tests: one answers like the Hugging Face Hub, one like a CDN / plain file host.

The hub server serves ``/{repo}/resolve/{revision}/{file}`` (HEAD and GET) with the headers
huggingface_hub reads (ETag, X-Repo-Commit, Content-Length; for large "LFS" files a 302 to the CDN with
X-Linked-Etag = sha256 and X-Linked-Size, as the hub does), the ``/api/models/...`` listing that
``snapshot_download`` needs, and the hub's error codes. The CDN server serves those blobs and plain URL
files with Range support. Both log every request so tests can assert what went over the wire, and can
be told to fail (status code) or to close the connection mid-body.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth")


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]


@dataclass
class World:
    repos: dict[str, Repo] = field(default_factory=dict)
    urls: dict[str, bytes] = field(default_factory=dict)  # CDN path -> content
    log: list[tuple[str, str, dict]] = field(default_factory=list)  # (method, path, lower-case headers)
    fail: dict[str, int] = field(default_factory=dict)  # path prefix -> HTTP status to answer
    fail_times: dict[str, int] = field(default_factory=dict)  # path prefix -> answers left (default: all)
    cut: dict[str, list[int]] = field(default_factory=dict)  # path -> bytes to send before closing, per GET
    hub_url: str = ""
    cdn_url: str = ""

    def add_repo(self, repo: str, files: dict[str, bytes]) -> Repo:
        commit = hashlib.sha1(repo.encode() + b"".join(sorted(files.values()))).hexdigest()
        self.repos[repo] = Repo(commit, dict(files))
        for content in files.values():
            self.urls[f"/cdn/{hashlib.sha256(content).hexdigest()}"] = content
        return self.repos[repo]

    def add_url(self, name: str, content: bytes) -> str:
        self.urls[f"/files/{name}"] = content
        return f"{self.cdn_url}/files/{name}"

    def requests(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, dict]]:
        return [r for r in self.log if (method is None or r[0] == method) and contains in r[1]]


def _handler(world: World, role: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, headers: dict[str, str], body: bytes = b"", cut: int | None = None):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

        def _error(self, status: int, code: str | None = None, extra: dict | None = None):
            headers = {"Content-Type": "application/json", **(extra or {})}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, headers, json.dumps({"error": code or f"HTTP {status}"}).encode())

        def do_HEAD(self):
            self._route()

        def do_GET(self):
            self._route()

        def _route(self):
            path = urlsplit(self.path).path
            world.log.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            for prefix, status in world.fail.items():
                if path.startswith(prefix) and world.fail_times.get(prefix, 1) > 0:
                    if prefix in world.fail_times:
                        world.fail_times[prefix] -= 1
                    return self._error(status)
            if role == "cdn":
                return self._serve_blob(path)
            if path.startswith("/api/models/"):
                return self._api(path, urlsplit(self.path).query)
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if not m:
                return self._error(404, "RepoNotFound")
            return self._resolve(m.group(1), unquote(m.group(2)), unquote(m.group(3)))

        def _repo(self, repo: str, revision: str) -> Repo | None:
            if repo not in world.repos:
                self._error(404, "RepoNotFound")
                return None
            r = world.repos[repo]
            if revision not in ("main", r.commit):
                self._error(404, "RevisionNotFound")
                return None
            return r

        def _resolve(self, repo: str, revision: str, filename: str):
            r = self._repo(repo, revision)
            if r is None:
                return
            if filename not in r.files:
                return self._error(404, "EntryNotFound", {"X-Repo-Commit": r.commit})
            content = r.files[filename]
            sha256 = hashlib.sha256(content).hexdigest()
            if filename.endswith(LFS_SUFFIXES):  # LFS file: redirect to the CDN like the hub does
                return self._send(302, {
                    "Location": f"{world.cdn_url}/cdn/{sha256}",
                    "X-Repo-Commit": r.commit,
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(content)),
                    "ETag": f'W/"{hashlib.sha1(content).hexdigest()}"',
                    "Content-Length": "0",
                })
            self._send(200, {"X-Repo-Commit": r.commit, "ETag": f'"{hashlib.sha1(content).hexdigest()}"'}, content)

        def _api(self, path: str, query: str):
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+))?(/.*)?", path)
            if not m:
                return self._error(404, "RepoNotFound")
            repo, kind, revision = m.group(1), m.group(2) or "revision", unquote(m.group(3) or "main")
            r = self._repo(repo, revision)
            if r is None:
                return
            if kind == "revision":
                body = {"id": repo, "modelId": repo, "sha": r.commit, "private": False,
                        "siblings": [{"rfilename": f} for f in r.files]}
            else:
                body = []
                for f, content in r.files.items():
                    entry = {"type": "file", "oid": hashlib.sha1(content).hexdigest(), "size": len(content),
                             "path": f}
                    if f.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content),
                                        "pointerSize": 134}
                    body.append(entry)
            self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

        def _serve_blob(self, path: str):
            if path not in world.urls:
                return self._error(404)
            content = world.urls[path]
            cut = world.cut[path].pop(0) if world.cut.get(path) and self.command == "GET" else None
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if m and int(m.group(1)) < len(content):
                start = int(m.group(1))
                body = content[start:]
                return self._send(206, {
                    "Content-Range": f"bytes {start}-{len(content) - 1}/{len(content)}",
                    "Accept-Ranges": "bytes",
                    "Content-Length": str(len(body)),
                    "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
                }, body, cut)
            self._send(200, {"Accept-Ranges": "bytes", "Content-Length": str(len(content)),
                             "ETag": f'"{hashlib.sha256(content).hexdigest()}"'}, content, cut)

    return Handler


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch):
    """Registry files added by one test (``add_registry``) never leak into the next."""
    monkeypatch.setattr("videolm.zoo.registry._extra_files", [])
    monkeypatch.delenv("VIDEOLM_ZOO", raising=False)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Hub + CDN loopback servers; HF_ENDPOINT and VIDEOLM_HOME point at them for the test."""
    w = World()
    servers = []
    for role in ("hub", "cdn"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(w, role))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        setattr(w, f"{role}_url", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_ENDPOINT", w.hub_url)
    monkeypatch.setenv("VIDEOLM_HOME", str(tmp_path / "videolm_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("VIDEOLM_ZOO", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    yield w
    for server in servers:
        server.shutdown()
        server.server_close()
