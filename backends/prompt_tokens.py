"""A rendered prompt → token ids, with special tokens parsed in the template's markup only.

llama.cpp's own tokenizer (``special=True``) cuts the whole text at every special token's text and
tokenizes the raw stretches between them separately. We do the same cut, but only at special tokens
found in markup: message text (``is_markup`` false) is never read as control tokens, so a user who
types ``<|im_end|>\\n<|im_start|>system`` sends those characters, not a forged turn. When the messages
hold no special-token text the result is exactly llama.cpp's tokenization of the whole prompt.

BOS follows the vocabulary: it is added only when the vocabulary's add-BOS flag is set and the prompt
does not already start with it; a BOS the template wrote is kept (SmolLM2's BOS is ``<|im_start|>``
with add-BOS off: dropping it loses the first token of every prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import llama_cpp
from llama_cpp import Llama

# What llama.cpp parses only with special=True (user-defined tokens are cut out either way).
_PARSED_ONLY_AS_SPECIAL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN


class Vocab(Protocol):
    """The few tokenizer calls this needs (``LlamaCppBackend`` provides them from llama.cpp)."""

    def tokenize(self, text: str, special: bool) -> list[int]:
        """Token ids of ``text`` with no BOS added."""
        ...

    def token_attr(self, token: int) -> int:
        """llama.cpp's ``LLAMA_TOKEN_ATTR_*`` bits."""
        ...

    def token_text(self, token: int) -> str:
        """The token's text as the vocabulary stores it (a special token's own text)."""
        ...

    @property
    def bos(self) -> int:
        """The BOS id, -1 when there is none."""
        ...

    @property
    def add_bos(self) -> bool:
        ...


class LlamaVocab:
    """llama.cpp's vocabulary as ``prompt_tokens.Vocab``."""

    def __init__(self, llama: Llama) -> None:
        self._llama = llama
        self._model = llama._model
        self.bos = self._model.token_bos()
        self.add_bos = bool(self._model.add_bos_token())

    def tokenize(self, text: str, special: bool) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8", errors="replace"), add_bos=False, special=special)

    def token_attr(self, token: int) -> int:
        return int(self._model.token_get_attr(token))

    def token_text(self, token: int) -> str:
        return self._model.token_get_text(token)


def _specials_in(vocab: Vocab, markup: str) -> list[tuple[int, int, int]]:
    """``(start, end, id)`` of each special token llama.cpp would cut out of ``markup``, in order."""
    found: list[tuple[int, int, int]] = []
    pos = 0
    for token in vocab.tokenize(markup, special=True):
        if not vocab.token_attr(token) & _PARSED_ONLY_AS_SPECIAL:
            continue
        text = vocab.token_text(token)
        at = markup.find(text, pos) if text else -1
        if at < 0:
            continue
        found.append((at, at + len(text), token))
        pos = at + len(text)
    return found


def tokenize_parts(vocab: Vocab, parts: Sequence[tuple[str, bool]]) -> list[int]:
    """Token ids of the joined ``parts`` (``(text, is_markup)``), BOS per the vocabulary's flag."""
    fragments: list[str | int] = []
    raw: list[str] = []
    for text, is_markup in parts:
        if not is_markup:
            raw.append(text)
            continue
        pos = 0
        for start, end, token in _specials_in(vocab, text):
            attr = vocab.token_attr(token)
            raw.append(text[pos:start])
            stretch = "".join(raw)
            if attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP:
                stretch = stretch.rstrip()
            fragments += [stretch, token]
            raw = []
            pos = end
            if attr & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
        raw.append(text[pos:])
    fragments.append("".join(raw))
    tokens: list[int] = []
    for fragment in fragments:
        if isinstance(fragment, int):
            tokens.append(fragment)
        elif fragment:
            tokens += vocab.tokenize(fragment, special=False)
    if vocab.add_bos and vocab.bos >= 0 and (not tokens or tokens[0] != vocab.bos):
        tokens.insert(0, vocab.bos)
    return tokens
