"""Pull GGUFs from the Hugging Face Hub into the Hugging Face cache, resumably and verified.

Why not ``hf_hub_download``: in huggingface_hub 2.4 it writes to a per-process temporary file and deletes
it on any failure, so Ctrl+C loses everything downloaded so far, and it never checks the sha256 of what
it saved. tokrace keeps huggingface_hub for every HTTP exchange (``get_hf_file_metadata``,
``get_paths_info``, ``http_get`` with its retries and range resume) and owns only the file handling:

1. bytes go to ``blobs/<etag>.tokrace-partial`` in the repo's cache folder; a later pull appends to it
   (an HTTP range request), so an interruption or Ctrl+C costs nothing;
2. the finished file's sha256 is checked against the Hub's LFS metadata (git blob sha1 for non-LFS
   files); a mismatch deletes it;
3. only then is it renamed to ``blobs/<etag>`` and linked as ``snapshots/<commit>/<file>``, exactly
   where huggingface_hub puts it (other tools reuse it, and files they already fetched are reused);
4. the pull is recorded (``store``) once every shard passed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.hub import HfRef, hub_cache_dir, hub_endpoint, hub_errors, resolve_files
from tokrace.model_registry.store import Pull, PulledFile, find_pull, record_pull
from tokrace.model_registry.transfer import ProgressFn

PARTIAL_SUFFIX = ".tokrace-partial"
_HASH_CHUNK = 4 << 20
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class DownloadCancelled(TokraceError):
    """The user stopped a pull; what was downloaded stays for the next one."""

    kind = "cancelled"


@dataclass(frozen=True, slots=True)
class RemoteGguf:
    filename: str
    url: str
    size: int
    etag: str
    commit: str
    sha256: str | None
    """LFS sha256; None for a file stored in git itself (then ``git_sha1`` is checked)."""
    git_sha1: str | None


def repo_cache_dir(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def describe_remote(ref: HfRef) -> list[RemoteGguf]:
    """Each file of ``ref`` with its size, etag, commit and expected hash (metadata only)."""
    from huggingface_hub import HfApi, RepoFile, get_hf_file_metadata, hf_hub_url

    endpoint = hub_endpoint()
    files = resolve_files(ref)
    out: list[RemoteGguf] = []
    with hub_errors(str(ref)):
        metas = [
            (f, hf_hub_url(ref.repo_id, f, revision=ref.revision, endpoint=endpoint)) for f in files
        ]
        heads = [(f, url, get_hf_file_metadata(url, endpoint=endpoint)) for f, url in metas]
        commit = heads[0][2].commit_hash or ""
        infos = HfApi(endpoint=endpoint).get_paths_info(ref.repo_id, files, revision=commit or ref.revision)
    by_path = {i.path: i for i in infos}
    for f, url, meta in heads:
        info = by_path.get(f)
        if not isinstance(info, RepoFile) or meta.size is None or not meta.etag or not meta.commit_hash:
            raise TokraceError(f"{ref}: the Hub gave no size/hash for {f}; try again later", kind="network")
        lfs = info.lfs  # None for a file stored in git itself: then its git blob id is checked
        sha256, git_sha1 = (lfs.sha256, None) if lfs is not None else (None, info.blob_id)
        out.append(RemoteGguf(f, url, meta.size, meta.etag, meta.commit_hash, sha256, git_sha1))
    return out


def _progress_class(progress: ProgressFn | None, cancel: threading.Event | None, label: str,
                    base: int, grand_total: int) -> type:
    """A tqdm stand-in for ``http_get``: forwards bytes to ``progress`` and stops on ``cancel``."""

    class Bar:
        def __init__(self, *, initial: int = 0, **_: object) -> None:
            self.n = initial

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: int) -> None:
            # Raising here drops the chunk before http_get writes it, so the partial file stays whole.
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"stopped pulling {label}; pull it again to resume")
            self.n += n
            if progress:
                progress(base + self.n, grand_total, f"downloading {label}")

    return Bar


def _hash_file(path: Path, algo: str, progress: ProgressFn | None, label: str, base: int,
               total: int, cancel: threading.Event | None) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256() if algo == "sha256" else hashlib.sha1(b"blob %d\0" % size)
    done = 0
    with path.open("rb") as f:
        while block := f.read(_HASH_CHUNK):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"stopped verifying {label}; pull it again (nothing is lost)")
            digest.update(block)
            done += len(block)
            if progress:
                progress(base + done, total, f"verifying {label}")
    return digest.hexdigest()


def _link(blob: Path, pointer: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:
        shutil.copyfile(blob, pointer)  # no symlinks (some Windows setups): huggingface_hub copies too


OpenFn = Callable[[Path], object]


def _fetch_one(rf: RemoteGguf, repo_dir: Path, progress: ProgressFn | None, cancel: threading.Event | None,
               base: int, grand_total: int, open_partial: OpenFn | None) -> tuple[Path, bool]:
    """Make ``blobs/<etag>`` hold the verified file; returns (blob, downloaded_by_us)."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    blob = repo_dir / "blobs" / rf.etag
    label = rf.filename
    algo, expected = ("sha256", rf.sha256) if rf.sha256 else ("sha1", rf.git_sha1 or "")
    if blob.is_file():
        # Already in the HF cache (another tool, or an earlier pull): trusted only after the same check.
        got = _hash_file(blob, algo, progress, label, base, grand_total, cancel)
        if got == expected:
            return blob, False
        raise TokraceError(
            f"{blob} (in the Hugging Face cache) has {algo} {got[:12]}…, expected {expected[:12]}…;"
            f" delete it and pull again", kind="model_file"
        )
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
    have = partial.stat().st_size if partial.exists() else 0
    if have > rf.size:
        partial.unlink()
        have = 0
    free = shutil.disk_usage(blob.parent).free
    if free < rf.size - have:
        raise TokraceError(
            f"not enough disk space for {label}: needs {rf.size - have:,} more bytes, {free:,} free in"
            f" {blob.parent}; free some space and pull again", kind="disk"
        )
    bar = _progress_class(progress, cancel, label, base, grand_total)
    try:
        with hub_errors(label):
            handle = open_partial(partial) if open_partial else partial.open("ab")
            with handle as f:  # type: ignore[attr-defined]
                http_get(rf.url, f, resume_size=have, headers=build_hf_headers(), expected_size=rf.size,
                         displayed_filename=label, tqdm_class=bar)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TokraceError(
                f"the disk filled up while downloading {label} ({partial.parent}); free some space and"
                " pull again: it resumes where it stopped", kind="disk"
            ) from None
        if "Consistency check failed" in str(err):
            raise TokraceError(f"{label} arrived with the wrong size; pull again to resume",
                               kind="network") from None
        raise
    got = _hash_file(partial, algo, progress, label, base, grand_total, cancel)
    if got != expected:
        partial.unlink(missing_ok=True)
        raise TokraceError(
            f"{label} failed its {algo} check (got {got[:12]}…, the Hub says {expected[:12]}…);"
            " the download was deleted, pull again", kind="network"
        )
    os.replace(partial, blob)
    return blob, True


def pull_hf(ref: HfRef, *, model_id: str | None = None, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None, open_partial: OpenFn | None = None) -> Pull:
    """Download (or reuse) every file of ``ref``, verify it, and record the pull. Idempotent.

    ``open_partial`` opens the partial file for appending (tests use it to fake a full disk).
    Ctrl+C (KeyboardInterrupt) or ``cancel`` leave the partial file for the next pull and no record.
    """
    existing = find_pull(str(ref))
    if existing is not None:
        return existing
    remotes = describe_remote(ref)
    repo_dir = repo_cache_dir(ref.repo_id)
    try:
        # The whole set must fit before the first byte: a set that cannot fit leaves no shard behind.
        check_space(remotes, repo_dir)
        pull = _fetch_all(ref, remotes, repo_dir, model_id, progress, cancel, open_partial)
    except OSError as err:
        raise cache_problem(repo_dir, err) from None
    record_pull(pull)
    return pull


def _fetch_all(ref: HfRef, remotes: list[RemoteGguf], repo_dir: Path, model_id: str | None,
               progress: ProgressFn | None, cancel: threading.Event | None,
               open_partial: OpenFn | None) -> Pull:
    grand_total = sum(r.size for r in remotes)
    done = 0
    files: list[PulledFile] = []
    for rf in remotes:
        blob, owned = _fetch_one(rf, repo_dir, progress, cancel, done, grand_total, open_partial)
        done += rf.size
        pointer = repo_dir / "snapshots" / rf.commit / rf.filename
        _link(blob, pointer)
        st = blob.stat()
        files.append(PulledFile(rf.filename, str(pointer), str(blob), rf.sha256 or rf.git_sha1 or "",
                                st.st_size, st.st_mtime_ns, owned))
    commit = remotes[0].commit
    if not _COMMIT_RE.match(ref.revision):
        refs = repo_dir / "refs" / ref.revision
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(commit)
    return Pull(str(ref), ref.repo_id, ref.revision, commit, files, model_id=model_id)


def still_needed(remotes: list[RemoteGguf], repo_dir: Path) -> int:
    """Bytes still to download for ``remotes``: finished blobs count 0, partial ones their rest."""
    need = 0
    for rf in remotes:
        blob = repo_dir / "blobs" / rf.etag
        if blob.is_file():
            continue
        partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
        have = partial.stat().st_size if partial.is_file() else 0
        need += rf.size - have if have <= rf.size else rf.size
    return need


def check_space(remotes: list[RemoteGguf], repo_dir: Path) -> None:
    """Raises ``TokraceError`` (kind ``disk``) when the disk holding the cache lacks room for every
    file of the set still to download."""
    need = still_needed(remotes, repo_dir)
    if need == 0:
        return
    where = next((p for p in [repo_dir, *repo_dir.parents] if p.is_dir()), repo_dir)
    free = shutil.disk_usage(where).free
    if free < need:
        what = remotes[0].filename if len(remotes) == 1 else f"{len(remotes)} shards of {remotes[0].filename}"
        raise TokraceError(
            f"not enough disk space for {what}: needs {need:,} more bytes, {free:,} free in {where};"
            " free some space and pull again", kind="disk", facts={"needed": need, "free": free},
        )


def cache_problem(repo_dir: Path, err: OSError) -> TokraceError:
    """One line for a Hugging Face cache tokrace cannot write (read-only, a file where a folder goes)."""
    where = Path(err.filename) if isinstance(err.filename, str) else repo_dir
    return TokraceError(
        f"cannot write the Hugging Face cache at {where} ({err.strerror or type(err).__name__}); make it"
        " writable or set HF_HUB_CACHE to a writable folder", kind="storage", facts={"path": str(where)},
    )


def remove_pull(pull: Pull) -> tuple[list[Path], list[Path]]:
    """Delete the files tokrace downloaded for ``pull``; returns (deleted, kept because not ours)."""
    deleted, kept = [], []
    for f in pull.files:
        if not f.owned:
            kept.append(Path(f.path))
            continue
        for p in (Path(f.path), Path(f.blob)):
            if p.is_symlink() or p.exists():
                p.unlink()
                deleted.append(p)
    return deleted, kept
