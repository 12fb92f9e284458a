"""Loopback servers for zoo tests: one answers like the Hugging Face Hub, one like a CDN / plain file host.

The hub server serves ``/{repo}/resolve/{revision}/{file}`` (HEAD and GET) with the headers
huggingface_hub reads (ETag, X-Repo-Commit, Content-Length; for large "LFS" files a 302 to the CDN with
X-Linked-Etag = sha256 and X-Linked-Size, as the hub does), the ``/api/models/...`` listing that
``snapshot_download`` needs, and the hub's error codes. The CDN server serves those blobs and plain URL
files with Range support. Both log every request so tests can assert what went over the wire, and can
be told to fail (status code) or to close the connection mid-body.

Uploads speak the protocol of huggingface_hub's ``create_repo`` / ``create_branch`` / ``upload_folder``
(``create_commit``) without Xet storage (tests set huggingface_hub's own ``HF_HUB_DISABLE_XET`` switch,
since no Xet CAS server runs here): ``POST /api/repos/create``, ``POST /api/models/{repo}/branch/{branch}``,
``POST /api/validate-yaml`` (README.md front matter), ``POST /api/models/{repo}/preupload/{revision}``
(upload mode per file: ``lfs`` for weights and binary samples, else ``regular``; the remote oid of an
unchanged file, so that it is skipped), the git LFS batch API ``POST /{repo}.git/info/lfs/objects/batch``
(basic transfer: a PUT of the blob to the CDN, then a verify POST; no action for a blob the server has)
and ``POST /api/models/{repo}/commit/{revision}`` (NDJSON: header, regular files in base64, LFS pointers,
deletions), which moves the branch to a new commit. Writes need a token (``Authorization``); reads of a
private repository too. Every commit stays reachable by its id, so revisions can be pinned.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth")


def git_blob_oid(content: bytes) -> str:
    """git's object id of a blob (what the hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repo:
    """A repository: its commits (id -> files) and branches (name -> commit id); ``commit`` and ``files``
    are main's."""

    commit: str
    files: dict[str, bytes]
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # commit id -> summary

    def __post_init__(self):
        self.commits.setdefault(self.commit, self.files)
        self.branches.setdefault("main", self.commit)

    def at(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """``(commit id, files)`` of a branch name or a commit id; None when there is no such revision."""
        commit = self.branches.get(revision, revision if revision in self.commits else None)
        return None if commit is None else (commit, self.commits[commit])

    def add_commit(self, branch: str, files: dict[str, bytes], message: str = "") -> str:
        parent = self.branches[branch]
        commit = hashlib.sha1(parent.encode() + json.dumps(sorted((k, hashlib.sha256(v).hexdigest())
                                                                 for k, v in files.items())).encode()).hexdigest()
        self.commits[commit], self.branches[branch], self.messages[commit] = files, commit, message
        if branch == "main":
            self.commit, self.files = commit, files
        return commit


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
        """A repository whose main is ``files`` (a repository of that name moves main on; its earlier
        commits stay reachable by id)."""
        for content in files.values():
            self.urls[f"/cdn/{hashlib.sha256(content).hexdigest()}"] = content
        if repo in self.repos:
            self.repos[repo].add_commit("main", dict(files))
            return self.repos[repo]
        commit = hashlib.sha1(repo.encode() + b"".join(sorted(files.values()))).hexdigest()
        self.repos[repo] = Repo(commit, dict(files))
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

        def do_POST(self):
            self._route()

        def do_PUT(self):
            self._route()

        def _body(self) -> bytes:
            """The request body, sent with a Content-Length or chunked."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _json(self, body: object, status: int = 200, content_type: str = "application/json"):
            self._send(status, {"Content-Type": content_type}, json.dumps(body).encode())

        def _route(self):
            path = urlsplit(self.path).path
            world.log.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            body = self._body() if self.command in ("POST", "PUT") else b""
            for prefix, status in world.fail.items():
                if path.startswith(prefix) and world.fail_times.get(prefix, 1) > 0:
                    if prefix in world.fail_times:
                        world.fail_times[prefix] -= 1
                    return self._error(status)
            if role == "cdn":
                if self.command == "PUT":
                    return self._store_blob(path, body)
                return self._serve_blob(path)
            if self.command in ("POST", "PUT"):
                if "authorization" not in {k.lower() for k in self.headers}:
                    return self._error(401, "Unauthorized")
                return self._write(path, body)
            if path.startswith("/api/models/"):
                return self._api(path, urlsplit(self.path).query)
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if not m:
                return self._error(404, "RepoNotFound")
            return self._resolve(m.group(1), unquote(m.group(2)), unquote(m.group(3)))

        def _repo(self, repo: str, revision: str) -> tuple[Repo, str, dict[str, bytes]] | None:
            """The repository, the commit and the files of ``revision`` (a branch or commit id); else
            answers the hub's error and returns None. A private repository needs a token."""
            r = world.repos.get(repo)
            if r is None or (r.private and "authorization" not in {k.lower() for k in self.headers}):
                self._error(401 if r is not None else 404, "RepoNotFound")
                return None
            found = r.at(revision)
            if found is None:
                self._error(404, "RevisionNotFound")
                return None
            return r, *found

        def _resolve(self, repo: str, revision: str, filename: str):
            found = self._repo(repo, revision)
            if found is None:
                return
            _, commit, files = found
            if filename not in files:
                return self._error(404, "EntryNotFound", {"X-Repo-Commit": commit})
            content = files[filename]
            sha256 = hashlib.sha256(content).hexdigest()
            if filename.endswith(LFS_SUFFIXES):  # LFS file: redirect to the CDN like the hub does
                return self._send(302, {
                    "Location": f"{world.cdn_url}/cdn/{sha256}",
                    "X-Repo-Commit": commit,
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(content)),
                    "ETag": f'W/"{hashlib.sha1(content).hexdigest()}"',
                    "Content-Length": "0",
                })
            self._send(200, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(content).hexdigest()}"'}, content)

        def _api(self, path: str, query: str):
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+))?(/.*)?", path)
            if not m:
                return self._error(404, "RepoNotFound")
            repo, kind, revision = m.group(1), m.group(2) or "revision", unquote(m.group(3) or "main")
            found = self._repo(repo, revision)
            if found is None:
                return
            r, commit, files = found
            if kind == "revision":
                body = {"id": repo, "modelId": repo, "sha": commit, "private": r.private,
                        "siblings": [{"rfilename": f} for f in files]}
            else:
                body = []
                for f, content in files.items():
                    entry = {"type": "file", "oid": hashlib.sha1(content).hexdigest(), "size": len(content),
                             "path": f}
                    if f.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content),
                                        "pointerSize": 134}
                    body.append(entry)
            self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

        # -- writes (huggingface_hub's upload API) --------------------------------------------------------

        def _write(self, path: str, body: bytes):
            if path == "/api/repos/create":
                return self._create_repo(json.loads(body))
            if path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body))
            m = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/(batch|verify)", path)
            if m:
                return self._lfs(m.group(1), m.group(2), json.loads(body))
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
            if not m:
                return self._error(404, "RepoNotFound")
            repo, action, revision = m.group(1), m.group(2), unquote(m.group(3))
            if repo not in world.repos:
                return self._error(404, "RepoNotFound")
            r = world.repos[repo]
            if action == "branch":
                if revision in r.branches:
                    return self._error(409, "BranchAlreadyExists")
                start = r.at((json.loads(body or b"{}") or {}).get("startingPoint") or "main")
                if start is None:
                    return self._error(404, "RevisionNotFound")
                r.branches[revision] = start[0]
                return self._json({"ref": f"refs/heads/{revision}"})
            if revision not in r.branches:
                return self._error(404, "RevisionNotFound")
            if action == "preupload":
                return self._preupload(r, revision, json.loads(body))
            return self._commit(repo, r, revision, body)

        def _create_repo(self, payload: dict):
            repo = f"{payload.get('organization') or 'user'}/{payload['name']}"
            url = f"{world.hub_url}/{repo}"
            if repo in world.repos:
                return self._json({"error": "You already created this model repo", "url": url}, 409)
            gitattributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            world.repos[repo] = Repo(hashlib.sha1(repo.encode()).hexdigest(), {".gitattributes": gitattributes},
                                     private=payload.get("visibility") == "private" or bool(payload.get("private")))
            return self._json({"url": url, "name": repo, "id": repo})

        def _validate_yaml(self, payload: dict):
            import yaml

            text = payload.get("content", "")
            m = re.match(r"---\n(.*?)\n---\n", text, re.S)
            try:
                meta = yaml.safe_load(m.group(1)) if m else None
            except yaml.YAMLError as e:
                return self._json({"errors": [{"message": str(e)}], "warnings": []}, 400)
            if m is not None and not isinstance(meta, dict):
                return self._json({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, 400)
            return self._json({"errors": [], "warnings": []})

        def _preupload(self, r: Repo, revision: str, payload: dict):
            files = r.at(revision)[1]
            out = []
            for f in payload["files"]:
                sample = base64.b64decode(f["sample"])
                lfs = f["path"].endswith(LFS_SUFFIXES) or b"\0" in sample
                old = files.get(f["path"])
                oid = None if old is None else (hashlib.sha256(old).hexdigest() if lfs else git_blob_oid(old))
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
            return self._json({"files": out, "commitOid": r.branches[revision]})

        def _lfs(self, repo: str, action: str, payload: dict):
            if repo not in world.repos:
                return self._error(404, "RepoNotFound")
            if action == "verify":
                content = world.urls.get(f"/cdn/{payload['oid']}")
                if content is None or len(content) != payload["size"]:
                    return self._error(404, "LfsObjectNotFound")
                return self._json({"message": "ok"})
            objects = []
            for o in payload["objects"]:
                obj = {"oid": o["oid"], "size": o["size"], "authenticated": True}
                if f"/cdn/{o['oid']}" not in world.urls:  # the server lacks it: where to PUT it, then verify
                    obj["actions"] = {"upload": {"href": f"{world.cdn_url}/upload/{o['oid']}"},
                                      "verify": {"href": f"{world.hub_url}/{repo}.git/info/lfs/objects/verify"}}
                objects.append(obj)
            self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, 200,
                       "application/vnd.git-lfs+json")

        def _commit(self, repo: str, r: Repo, revision: str, body: bytes):
            files = dict(r.at(revision)[1])
            message = ""
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary", "")
                    parent = value.get("parentCommit")
                    if parent is not None and parent != r.branches[revision]:
                        return self._error(412, "PreconditionFailed")
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    content = world.urls.get(f"/cdn/{value['oid']}")
                    if content is None:
                        return self._json({"error": f"LFS object {value['oid']} not uploaded"}, 400)
                    files[value["path"]] = content
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {k: v for k, v in files.items() if not k.startswith(value["path"].rstrip("/") + "/")}
                else:
                    return self._json({"error": f"unknown commit operation {key!r}"}, 400)
            commit = r.add_commit(revision, files, message)
            self._json({"success": True, "commitOid": commit, "commitUrl": f"{world.hub_url}/{repo}/commit/{commit}",
                        "pullRequestUrl": None})

        def _store_blob(self, path: str, body: bytes):
            m = re.fullmatch(r"/upload/([0-9a-f]{64})", path)
            if not m or hashlib.sha256(body).hexdigest() != m.group(1):
                return self._error(400)
            world.urls[f"/cdn/{m.group(1)}"] = body
            self._send(200, {"ETag": f'"{m.group(1)}"'})

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
