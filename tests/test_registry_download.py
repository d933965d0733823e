"""Pulls from the loopback fake Hub: full, resumed, sharded, rejected, gated, missing, disk full, Ctrl+C."""

from __future__ import annotations

import errno
import hashlib
import io
import threading
from pathlib import Path

import pytest
from fake_hub import FakeHub, use_fake_hub

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.hf_download import PARTIAL_SUFFIX, DownloadCancelled, pull_hf, repo_cache_dir
from tokrace.model_registry.hub import parse_hf_ref
from tokrace.model_registry.store import find_pull, load_pulls

REPO = "acme/Tiny-GGUF"
BLOB = bytes(range(256)) * 4096  # 1 MiB, not a real GGUF: downloads do not parse


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from huggingface_hub import constants

    # huggingface_hub streams 10 MB chunks and keeps only whole chunks on a retry; small chunks let
    # these 1 MB files be interrupted and resumed mid-file as a multi-GB file would be.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, tmp_path, hub)
        hub.add_repo(REPO, {
            "tiny-Q4_K_M.gguf": BLOB,
            "tiny-Q8_0.gguf": BLOB[::-1],
            "big/tiny-F16-00001-of-00003.gguf": b"a" * 300_000,
            "big/tiny-F16-00002-of-00003.gguf": b"b" * 300_000,
            "big/tiny-F16-00003-of-00003.gguf": b"c" * 1000,
            "README.md": b"# tiny",
        })
        yield hub


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_lands_in_hf_cache_verified_and_recorded(hub: FakeHub) -> None:
    seen: list[tuple[int, int, str]] = []
    pull = pull_hf(parse_hf_ref(f"hf:{REPO}:Q4_K_M"), progress=lambda d, t, w: seen.append((d, t, w)))
    path = pull.path
    assert path.read_bytes() == BLOB
    assert path.is_symlink() and path.resolve().parent.name == "blobs"
    assert path.resolve().name == _sha(BLOB)  # LFS etag = sha256, as the Hub sends it
    assert str(path).startswith(str(repo_cache_dir(REPO)))
    assert (repo_cache_dir(REPO) / "refs" / "main").read_text() == hub.repos[REPO].commit
    assert seen[-1][0] == seen[-1][1] == len(BLOB) and "verifying" in seen[-1][2]
    assert any("downloading" in w for _, _, w in seen)
    assert find_pull(f"hf:{REPO}:Q4_K_M") is not None and pull.files[0].owned
    # A second pull is a no-op: no byte is served again.
    served = hub.stats["tiny-Q4_K_M.gguf"]
    assert pull_hf(parse_hf_ref(f"hf:{REPO}:Q4_K_M")).path == path
    assert hub.stats["tiny-Q4_K_M.gguf"] == served


def test_resume_after_server_drops_connection_mid_file(hub: FakeHub) -> None:
    hub.drop_after["tiny-Q4_K_M.gguf"] = 300_000
    pull = pull_hf(parse_hf_ref(f"hf:{REPO}/tiny-Q4_K_M.gguf"))
    assert pull.path.read_bytes() == BLOB
    ranges = [r for p, r in hub.range_requests if p == "tiny-Q4_K_M.gguf" and r]
    assert len(ranges) == 1 and ranges[0].startswith("bytes=")  # resumed with a range, not from 0
    resumed_at = int(ranges[0][6:-1])
    assert 0 < resumed_at <= 300_000
    assert hub.stats["tiny-Q4_K_M.gguf"] == 300_000 + len(BLOB) - resumed_at


def test_cancel_keeps_partial_and_next_pull_resumes(hub: FakeHub) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int, what: str) -> None:
        if done >= 200_000:
            cancel.set()

    ref = parse_hf_ref(f"hf:{REPO}/tiny-Q4_K_M.gguf")
    with pytest.raises(DownloadCancelled, match="resume"):
        pull_hf(ref, progress=progress, cancel=cancel)
    partial = next(repo_cache_dir(REPO).glob(f"blobs/*{PARTIAL_SUFFIX}"))
    kept = partial.stat().st_size
    assert 0 < kept < len(BLOB)
    assert load_pulls() == {} and not list(repo_cache_dir(REPO).glob("snapshots/*/*"))
    pull = pull_hf(ref)
    assert pull.path.read_bytes() == BLOB
    assert any(r == f"bytes={kept}-" for _, r in hub.range_requests)


def test_ctrl_c_leaves_it_resumable_and_unregistered(hub: FakeHub) -> None:
    calls = 0

    def progress(done: int, total: int, what: str) -> None:
        nonlocal calls
        calls += 1
        if done > 100_000:
            raise KeyboardInterrupt

    ref = parse_hf_ref(f"hf:{REPO}/tiny-Q8_0.gguf")
    with pytest.raises(KeyboardInterrupt):
        pull_hf(ref, progress=progress)
    assert load_pulls() == {}
    assert list(repo_cache_dir(REPO).glob(f"blobs/*{PARTIAL_SUFFIX}"))
    assert pull_hf(ref).path.read_bytes() == BLOB[::-1]


def test_sha_mismatch_is_rejected_and_nothing_is_usable(hub: FakeHub) -> None:
    hub.lie_sha["tiny-Q4_K_M.gguf"] = "0" * 64
    with pytest.raises(TokraceError, match="sha256 check"):
        pull_hf(parse_hf_ref(f"hf:{REPO}:Q4_K_M"))
    blobs = list(repo_cache_dir(REPO).glob("blobs/*"))
    assert blobs == [] and load_pulls() == {}


def test_sharded_gguf_downloads_every_shard(hub: FakeHub) -> None:
    pull = pull_hf(parse_hf_ref(f"hf:{REPO}:F16"))
    assert [f.filename for f in pull.files] == [f"big/tiny-F16-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert pull.path.name == "tiny-F16-00001-of-00003.gguf"
    assert all(Path(f.path).is_file() for f in pull.files)
    assert pull.size == 601_000


def test_missing_file_is_a_404_line(hub: FakeHub) -> None:
    with pytest.raises(TokraceError, match="no such file") as exc:
        pull_hf(parse_hf_ref(f"hf:{REPO}/nope.gguf"))
    assert "\n" not in str(exc.value)


def test_gated_repo_401_says_how_to_log_in(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("meta/Gated-GGUF", {"m-Q4_K_M.gguf": BLOB}, gated=True)
    with pytest.raises(TokraceError) as exc:
        pull_hf(parse_hf_ref("hf:meta/Gated-GGUF/m-Q4_K_M.gguf"))
    message = str(exc.value)
    assert "gated" in message and "HF_TOKEN" in message and "hf auth login" in message
    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert pull_hf(parse_hf_ref("hf:meta/Gated-GGUF/m-Q4_K_M.gguf")).path.read_bytes() == BLOB


def test_disk_full_while_writing_keeps_partial_and_explains(hub: FakeHub) -> None:
    class FullDisk(io.FileIO):
        written = 0

        def write(self, data: bytes) -> int:  # type: ignore[override]
            if FullDisk.written + len(data) > 150_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            FullDisk.written += len(data)
            return super().write(data)

    ref = parse_hf_ref(f"hf:{REPO}/tiny-Q4_K_M.gguf")
    with pytest.raises(TokraceError, match="disk filled up"):
        pull_hf(ref, open_partial=lambda p: FullDisk(p, "ab"))
    assert load_pulls() == {}
    assert pull_hf(ref).path.read_bytes() == BLOB


def test_not_enough_space_is_refused_before_downloading(hub: FakeHub, monkeypatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 5))
    with pytest.raises(TokraceError, match="not enough disk space"):
        pull_hf(parse_hf_ref(f"hf:{REPO}/tiny-Q4_K_M.gguf"))
    assert hub.stats["tiny-Q4_K_M.gguf"] == 0


def test_file_already_in_hf_cache_is_verified_and_reused_not_owned(hub: FakeHub) -> None:
    blob = repo_cache_dir(REPO) / "blobs" / _sha(BLOB)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(BLOB)
    pull = pull_hf(parse_hf_ref(f"hf:{REPO}:Q4_K_M"))
    assert hub.stats["tiny-Q4_K_M.gguf"] == 0
    assert not pull.files[0].owned
