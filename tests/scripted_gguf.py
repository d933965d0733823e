"""A "scripted" tiny llama GGUF: greedy decoding follows a token chain chosen by the test.

Every layer's ``attn_output`` and ``ffn_down`` are zero, so the residual stream at the last layer is
the current token's embedding. Embeddings are one-hot (``n_embd`` ≥ vocabulary size), so after the
final RMS norm the hidden state is ``sqrt(n_embd)`` × e_a, and the logits of token ``a`` are column
``a`` of the output matrix. Setting ``output[b, a] = 1`` makes ``a → b`` the greedy step (margin
≈ 18 logits at 320 wide); every token not in the chain leads to EOS.

The vocabulary is SentencePiece-style: ``<unk> <s> </s>``, the 256 byte tokens, then ``specials``
(CONTROL tokens) and ``words`` (NORMAL tokens, ``▁`` for a space). Prompts tokenize to bytes (no
merges), so the prompt's last token is usually a byte token such as ``<0x0A>`` (a newline).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, TokenType

BASE_TOKENS = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
NEWLINE = "<0x0A>"


def vocabulary(specials: Sequence[str] = (), words: Sequence[str] = ()) -> list[str]:
    return [*BASE_TOKENS, *specials, *words]


def write_scripted_llama(
    path: Path,
    chain: Sequence[str],
    *,
    specials: Sequence[str] = (),
    words: Sequence[str] = (),
    chat_template: str | None = None,
    bos: str = "<s>",
    eos: str = "</s>",
    eot: str | None = None,
    add_bos: bool = True,
    name: str = "scripted-llama",
    n_ctx: int = 512,
    n_layer: int = 1,
    extra_kv: dict[str, str] | None = None,
    more_chains: Sequence[Sequence[str]] = (),
    split_max_tensors: int = 0,
    drop_tensors: Sequence[str] = (),
) -> Path:
    """Write the model; ``chain`` is a list of token texts: greedy decoding goes from each to the next
    (``chain[0]`` is usually the prompt's last token, e.g. ``NEWLINE``). A token may appear once as a
    source (across ``chain`` and ``more_chains``, further chains). ``split_max_tensors`` writes a split
    model (``stem-00001-of-0000N.gguf`` next to ``path``, as gguf-split names them); ``drop_tensors``
    leaves tensors out (a file llama.cpp refuses). Returns the path of the (first) file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = vocabulary(specials, words)
    index = {t: i for i, t in enumerate(tokens)}
    if len(index) != len(tokens):
        raise ValueError("duplicate token texts")
    types = ([TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
             + [TokenType.CONTROL] * len(specials) + [TokenType.NORMAL] * len(words))
    n_vocab = len(tokens)
    n_embd = max(64, (n_vocab + 63) // 64 * 64)
    n_head, n_ff = 4, 32

    head = np.zeros((n_vocab, n_embd), dtype=np.float32)
    head[index[eos], :n_vocab] = 0.5  # every token not in the chain ends the reply
    sources: set[str] = set()
    for a, b in itertools.chain.from_iterable(itertools.pairwise(c) for c in (chain, *more_chains)):
        if a in sources:
            raise ValueError(f"{a!r} leads to two tokens")
        sources.add(a)
        head[:, index[a]] = 0.0
        head[index[b], index[a]] = 1.0
    embd = np.zeros((n_vocab, n_embd), dtype=np.float32)
    embd[np.arange(n_vocab), np.arange(n_vocab)] = 1.0

    w = GGUFWriter(str(path), "llama", split_max_tensors=split_max_tensors)
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_bos_token_id(index[bos])
    w.add_eos_token_id(index[eos])
    if eot is not None:
        w.add_eot_token_id(index[eot])
    w.add_add_bos_token(add_bos)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for key, value in (extra_kv or {}).items():
        w.add_string(key, value)

    rng = np.random.default_rng(0)
    tensors: list[tuple[str, np.ndarray]] = [
        ("token_embd.weight", embd),
        ("output_norm.weight", np.ones(n_embd, dtype=np.float32)),
        ("output.weight", head),
    ]
    for i in range(n_layer):
        p = f"blk.{i}."
        for t, shape in (("attn_q", (n_embd, n_embd)), ("attn_k", (n_embd, n_embd)),
                         ("attn_v", (n_embd, n_embd)), ("ffn_gate", (n_ff, n_embd)),
                         ("ffn_up", (n_ff, n_embd))):
            tensors.append((p + t + ".weight", (rng.standard_normal(shape) * 0.1).astype(np.float32)))
        tensors += [
            (p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32)),
            (p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32)),
            (p + "attn_output.weight", np.zeros((n_embd, n_embd), dtype=np.float32)),
            (p + "ffn_down.weight", np.zeros((n_embd, n_ff), dtype=np.float32)),
        ]
    for tensor_name, data in tensors:
        if tensor_name not in drop_tensors:
            w.add_tensor(tensor_name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    n_written = sum(name not in drop_tensors for name, _ in tensors)
    if split_max_tensors and n_written > split_max_tensors:
        return path.with_name(f"{path.stem}-00001-of-{-(-n_written // split_max_tensors):05d}.gguf")
    return path
