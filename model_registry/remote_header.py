"""Read a GGUF header on the Hub without downloading the weights: HTTP range reads through
huggingface_hub's HTTP client (its auth headers, retries and error types), fed to ``parse_gguf``.

A header is the metadata plus the tensor table: kilobytes for a small model, a few MiB for a large
vocabulary. Reads start at 1 MiB and double, and big numeric arrays (token scores) are skipped by
seeking, so a 40 GB model costs a few requests and a few MiB.

Stable API (the GPU split planner uses it): ``read_remote_gguf_info(ref) -> GGUFInfo``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from tokrace.model_registry.errors import ModelFileError, TokraceError
from tokrace.model_registry.gguf_meta import (
    GGUFInfo,
    TensorInfo,
    merge_shard_tensors,
    parse_gguf,
    read_tensor_table,
)
from tokrace.model_registry.hub import HfRef, hub_endpoint, hub_errors, parse_hf_ref, resolve_files

FIRST_READ = 1 << 20
MAX_READ = 16 << 20
MAX_HEADER = 256 << 20
"""A header bigger than this is not a model's (the largest real vocabularies are ~10 MiB)."""


class RangeReader(io.RawIOBase):
    """A read-only, seekable view of a remote file that fetches only the byte ranges read."""

    def __init__(self, url: str, size: int, headers: dict[str, str], *, source: str) -> None:
        super().__init__()
        self.url, self.size, self.headers, self.source = url, size, headers, source
        self.pos = 0
        self._buf_start = 0
        self._buf = b""
        self._next_read = FIRST_READ
        self.bytes_fetched = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise TokraceError("reading a whole remote file is not allowed here (header reads only)",
                               kind="usage")
        n = min(n, max(0, self.size - self.pos))
        if n == 0:
            return b""
        end = self.pos + n
        buf_end = self._buf_start + len(self._buf)
        if not (self._buf_start <= self.pos and end <= buf_end):
            self._fetch(self.pos, n)
        offset = self.pos - self._buf_start
        data = self._buf[offset:offset + n]
        self.pos += len(data)
        return data

    def _fetch(self, start: int, n: int) -> None:
        from huggingface_hub.utils import hf_raise_for_status, http_backoff

        if start + n > MAX_HEADER:
            raise ModelFileError(
                f"{self.source}: the GGUF header runs past {MAX_HEADER >> 20} MiB: the file is corrupt"
            )
        length = min(max(n, self._next_read), self.size - start)
        self._next_read = min(self._next_read * 2, MAX_READ)
        headers = {**self.headers, "Range": f"bytes={start}-{start + length - 1}"}
        response = http_backoff("GET", self.url, headers=headers)
        hf_raise_for_status(response)
        if response.status_code != 206:
            # A 200 would be the whole file: never take it, the point is not to download weights.
            raise TokraceError(
                f"{self.source}: the server ignored the byte range (HTTP {response.status_code});"
                " download the model to read its metadata", kind="network"
            )
        self.requests += 1
        self.bytes_fetched += len(response.content)
        self._buf_start, self._buf = start, response.content


@dataclass(frozen=True, slots=True)
class RemoteFile:
    url: str
    size: int
    commit: str | None
    etag: str | None


def remote_file(repo_id: str, filename: str, revision: str) -> RemoteFile:
    """HEAD the file's resolve URL: size, commit and etag (huggingface_hub follows Hub redirects)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = hub_endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    with hub_errors(f"{repo_id}/{filename}"):
        meta = get_hf_file_metadata(url, endpoint=endpoint)
    if meta.size is None:
        raise TokraceError(f"{repo_id}/{filename}: the Hub did not say how big the file is; try again later",
                           kind="network")
    return RemoteFile(url=url, size=meta.size, commit=meta.commit_hash, etag=meta.etag)


def read_remote_header(repo_id: str, filename: str, revision: str = "main") -> tuple[GGUFInfo, RangeReader]:
    """One file's header, with the reader (its ``bytes_fetched`` shows what it cost)."""
    from huggingface_hub.utils import build_hf_headers

    rf = remote_file(repo_id, filename, revision)
    source = f"hf:{repo_id}/{filename}"
    reader = RangeReader(rf.url, rf.size, build_hf_headers(), source=source)
    with hub_errors(source):
        info = parse_gguf(reader, file_size=rf.size, source=source)  # type: ignore[arg-type]
    return info, reader


def read_remote_tensors(repo_id: str, filename: str, revision: str = "main") -> tuple[list[TensorInfo], int]:
    """A later shard's tensor table and file size."""
    from huggingface_hub.utils import build_hf_headers

    rf = remote_file(repo_id, filename, revision)
    source = f"hf:{repo_id}/{filename}"
    reader = RangeReader(rf.url, rf.size, build_hf_headers(), source=source)
    with hub_errors(source):
        return read_tensor_table(reader, source=source), rf.size  # type: ignore[arg-type]


def read_hf_ref_info(ref: HfRef) -> GGUFInfo:
    first, *rest = resolve_files(ref)
    info, _ = read_remote_header(ref.repo_id, first, ref.revision)
    if not rest:
        return info
    shards = [read_remote_tensors(ref.repo_id, f, ref.revision) for f in rest]
    return merge_shard_tensors(info, [t for t, _ in shards], [size for _, size in shards])


def read_remote_gguf_info(ref: str) -> GGUFInfo:
    """The header of a Hub GGUF named by ``hf:OWNER/NAME/FILE.gguf``, ``hf:OWNER/NAME:QUANT`` or a catalog
    id with a Hugging Face source, read with range requests (never the whole file). Sharded models are
    read shard by shard and merged. Raises ``TokraceError`` with one line on any failure."""
    ref = ref.strip()
    if ref.startswith("hf:"):
        return read_hf_ref_info(parse_hf_ref(ref))
    from tokrace.model_registry.catalog import load_catalog

    entry = load_catalog().get(ref)
    hf = entry.hf_ref()
    if hf is None:
        raise TokraceError(
            f"{ref} is not on Hugging Face (a {entry.source.kind} source); use 'tokrace models info {ref}'",
            kind="usage",
        )
    return read_hf_ref_info(hf)
