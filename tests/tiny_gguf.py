"""Writes tiny random-weight llama GGUFs that the real llama.cpp loads (about 0.5 MB at 2 × 64).

Weights are drawn per tensor from a generator seeded by ``(seed, tensor name)``, so two models with the
same seed and width share their embeddings, output head and first layers exactly. Layers from
``inert_from`` on get zero output projections (``attn_output``, ``ffn_down``) plus ``inert_noise``:
with no noise they leave the residual stream untouched, so a deeper model computes the same function as
a shallower one at a higher cost (a speculative-decoding pair with 100% acceptance).

The vocabulary is SentencePiece-style: ``<unk> <s> </s>`` then the 256 byte tokens ``<0x00>…<0xFF>``,
then ``extra_tokens`` normal tokens (used to make vocabularies differ). Random weights emit arbitrary
bytes, so many tokens release no text on their own: chunk count ≠ token count.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, TokenType

BOS_ID, EOS_ID = 1, 2
CHATML_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _rng(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def write_tiny_llama(
    path: Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_ff: int = 128,
    n_head: int = 4,
    n_head_kv: int = 4,
    n_ctx: int = 2048,
    seed: int = 0,
    inert_from: int | None = None,
    inert_noise: float = 0.0,
    extra_tokens: int = 0,
    chat_template: str | None = CHATML_TEMPLATE,
    name: str = "tiny-llama",
    weight_scale: float = 0.5,
    tied: bool = False,
) -> Path:
    """Write the model to ``path`` and return it. ``tied``: no ``output.weight`` (the output matrix is
    ``token_embd.weight``, as in SmolLM2 and Gemma 3)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    tokens += [f"▁tok{i}" for i in range(extra_tokens)]
    types += [TokenType.NORMAL] * extra_tokens
    n_vocab = len(tokens)

    w = GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(True)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    def tensor(name: str, shape: tuple[int, ...], *, scale: float = weight_scale) -> np.ndarray:
        return (_rng(seed, name).standard_normal(shape) * scale).astype(np.float32)

    head = tensor("output.weight", (n_vocab, n_embd))
    head[EOS_ID] = 0.0  # keep end-of-sequence unlikely, so replies run to max_tokens
    w.add_tensor("token_embd.weight", tensor("token_embd.weight", (n_vocab, n_embd)))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    if not tied:
        w.add_tensor("output.weight", head)
    n_kv = n_embd // n_head * n_head_kv
    for i in range(n_layer):
        p = f"blk.{i}."
        inert = inert_from is not None and i >= inert_from

        def out_proj(name: str, shape: tuple[int, ...], inert: bool = inert) -> np.ndarray:
            if not inert:
                return tensor(name, shape, scale=weight_scale / 4)
            return tensor(name, shape, scale=inert_noise)

        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", tensor(p + "attn_q.weight", (n_embd, n_embd)))
        w.add_tensor(p + "attn_k.weight", tensor(p + "attn_k.weight", (n_kv, n_embd)))
        w.add_tensor(p + "attn_v.weight", tensor(p + "attn_v.weight", (n_kv, n_embd)))
        w.add_tensor(p + "attn_output.weight", out_proj(p + "attn_output.weight", (n_embd, n_embd)))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", tensor(p + "ffn_gate.weight", (n_ff, n_embd)))
        w.add_tensor(p + "ffn_up.weight", tensor(p + "ffn_up.weight", (n_ff, n_embd)))
        w.add_tensor(p + "ffn_down.weight", out_proj(p + "ffn_down.weight", (n_embd, n_ff)))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
