"""A Hub stand-in on loopback: just enough of the Hugging Face Hub HTTP API for dataset repos.

The real `huggingface_hub` and `datasets` clients talk to it through `HF_ENDPOINT`. It covers
repo creation, branches, preupload (every file "regular", so content travels inline in the
commit), commits (add and delete), repo info, tree listing, paths-info and file resolution.
Not covered (only a real Hub shows them): LFS/Xet transfers, auth scopes, gated or private
access rules, rate limits, the dataset viewer and server-side card validation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})


class HubStandIn:
    """Start with `with HubStandIn(token="hf_test") as hub:`; `hub.endpoint` is the URL for HF_ENDPOINT."""

    def __init__(self, token: str = "hf_test_token", user: str = "tester"):
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.fail_commits = False  # answer every commit with a server error (an interrupted upload)
        self.requests: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                standin._handle(self, "GET")

            def do_HEAD(self):
                standin._handle(self, "HEAD")

            def do_POST(self):
                standin._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id].branches[branch] if repo_id in self.repos else {}

    # --- routing -------------------------------------------------------------------------
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", r"/api/repos/create", "_create"),
        ("POST", r"/api/validate-yaml", "_validate_yaml"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>.+)", "_branch"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)", "_preupload"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)", "_commit"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)", "_paths_info"),
        ("GET", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)", "_info"),
        ("GET", r"/api/datasets/(?P<repo>[^/]+/[^/]+)", "_info"),
        ("GET", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "_tree"),
        ("GET", r"/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "_resolve"),
        ("HEAD", r"/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "_resolve"),
    ]

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.requests.append(f"{method} {path}")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        for route_method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                status, payload, headers = getattr(self, name)(request, body, query, **match.groupdict())
                break
        else:
            status, payload, headers = 404, {"error": f"stand-in: no route for {method} {path}"}, {}
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        if status >= 400:
            headers["X-Error-Message"] = payload.get("error", "") if isinstance(payload, dict) else ""
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(data)

    def _authorised(self, request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _repo(self, request, repo: str, rev: str | None = None, write: bool = False):
        """(repo, files of the revision) or an error triple."""
        if write and not self._authorised(request):
            return None, (401, {"error": "Invalid credentials in Authorization header"}, {})
        entry = self.repos.get(repo)
        if entry is None or (entry.private and not self._authorised(request)):
            return None, (404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        rev = unquote(rev or "main")
        if rev not in entry.branches and rev not in entry.heads.values():
            return None, (404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
        branch = next((b for b, sha in entry.heads.items() if sha == rev), rev)
        return (entry, branch), None

    # --- endpoints -----------------------------------------------------------------------
    def _create(self, request, body, query):
        if not self._authorised(request):
            return 401, {"error": "Invalid credentials in Authorization header"}, {}
        spec = json.loads(body)
        repo = f"{spec.get('organization') or self.user}/{spec['name']}"
        if repo in self.repos:
            return 409, {"error": "You already created this dataset repo", "url": f"{self.endpoint}/datasets/{repo}"}, {}
        self.repos[repo] = Repo(private=bool(spec.get("private")))
        return 200, {"url": f"{self.endpoint}/datasets/{repo}", "name": repo}, {}

    def _validate_yaml(self, request, body, query):
        """The card checks this stand-in makes: YAML front matter that is a mapping, configs with names and data files."""
        import yaml

        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
        try:
            data = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"YAML does not parse: {exc}"}]}, {}
        if not isinstance(data, dict):
            return 400, {"errors": [{"message": "the YAML metadata must be a mapping"}]}, {}
        errors = [{"message": f"configs[{i}] needs config_name and data_files"} for i, c in enumerate(data.get("configs") or [])
                  if not isinstance(c, dict) or "config_name" not in c or "data_files" not in c]
        return (400 if errors else 200), {"errors": errors, "warnings": []}, {}

    def _branch(self, request, body, query, repo, rev):
        found, error = self._repo(request, repo, write=True)
        if error:
            return error
        entry, _ = found
        if rev in entry.branches:
            return 409, {"error": "Reference already exists"}, {}
        entry.branches[rev] = dict(entry.branches["main"])
        entry.heads[rev] = entry.heads["main"]
        return 200, {}, {}

    def _preupload(self, request, body, query, repo, rev):
        found, error = self._repo(request, repo, rev, write=True)
        if error:
            return error
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(body)["files"]]
        return 200, {"files": files, "commitOid": found[0].heads[found[1]]}, {}

    def _commit(self, request, body, query, repo, rev):
        found, error = self._repo(request, repo, rev, write=True)
        if error:
            return error
        if self.fail_commits:
            return 500, {"error": "stand-in: commit failed on purpose"}, {}
        entry, branch = found
        files = dict(entry.branches[branch])
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif item["key"] == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            elif item["key"] != "header":
                return 400, {"error": f"stand-in: unsupported commit operation {item['key']}"}, {}
        sha = hashlib.sha1(json.dumps(sorted((p, hashlib.sha1(c).hexdigest()) for p, c in files.items())).encode() + entry.heads[branch].encode()).hexdigest()
        entry.branches[branch], entry.heads[branch] = files, sha
        return 200, {"commitUrl": f"{self.endpoint}/datasets/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None}, {}

    def _info(self, request, body, query, repo, rev="main"):
        found, error = self._repo(request, repo, rev)
        if error:
            return error
        entry, branch = found
        return 200, {
            "id": repo, "_id": repo, "author": repo.split("/")[0], "sha": entry.heads[branch], "private": entry.private,
            "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "cardData": {},
            "lastModified": "2026-11-22T00:00:00.000Z", "createdAt": "2026-11-22T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in sorted(entry.branches[branch])],
        }, {}

    def _entries(self, files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        inside = {p: c for p, c in files.items() if not prefix or p.startswith(prefix + "/")}
        entries, folders = [], set()
        for path, content in sorted(inside.items()):
            rest = path[len(prefix) + 1 :] if prefix else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add("/".join(filter(None, [prefix, *parts[:depth]])))
            if recursive or len(parts) == 1:
                entries.append({"type": "file", "path": path, "size": len(content), "oid": _git_oid(content)})
        entries += [{"type": "directory", "path": f, "size": 0, "oid": hashlib.sha1(f.encode()).hexdigest()} for f in sorted(folders)]
        return entries

    def _tree(self, request, body, query, repo, rev, path=None):
        found, error = self._repo(request, repo, rev)
        if error:
            return error
        entry, branch = found
        files = entry.branches[branch]
        if path and path.strip("/") not in {p.rsplit("/", 1)[0] for p in files if "/" in p} | {""}:
            return 404, {"error": f"stand-in: no folder {path}"}, {"X-Error-Code": "EntryNotFound"}
        return 200, self._entries(files, path or "", query.get("recursive", ["false"])[0].lower() in ("1", "true")), {}

    def _paths_info(self, request, body, query, repo, rev):
        found, error = self._repo(request, repo, rev)
        if error:
            return error
        entry, branch = found
        files = entry.branches[branch]
        asked = parse_qs(body.decode()).get("paths", []) if body and not body.startswith(b"{") else json.loads(body or b"{}").get("paths", [])
        folders = {p.rsplit("/", 1)[0] for p in files if "/" in p}
        result = []
        for path in asked:
            path = path.strip("/")
            if path in files:
                result.append({"type": "file", "path": path, "size": len(files[path]), "oid": _git_oid(files[path])})
            elif path in folders:
                result.append({"type": "directory", "path": path, "size": 0, "oid": hashlib.sha1(path.encode()).hexdigest()})
        return 200, result, {}

    def _resolve(self, request, body, query, repo, rev, path):
        found, error = self._repo(request, repo, rev)
        if error:
            return error
        entry, branch = found
        content = entry.branches[branch].get(path)
        if content is None:
            return 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": entry.heads[branch]}
        oid = _git_oid(content)
        return 200, content, {"Content-Type": "application/octet-stream", "X-Repo-Commit": entry.heads[branch], "ETag": f'"{oid}"'}


def _git_oid(content: bytes) -> str:
    """The git blob id of a file, as the Hub reports for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
