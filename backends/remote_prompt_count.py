"""A remote request's prompt tokens counted on this side, for servers that send no ``usage``.

llama-cpp-python's server (``python -m llama_cpp.server``) streams no ``usage`` and no ``timings``, so
the client cannot see how many tokens the prompt it sent became. It names its model by the GGUF path it
loaded; when that file is on this machine (a server on loopback, or a shared disk), the prompt is
counted here exactly as that server counts it: the GGUF's own chat template (Jinja, as llama-cpp-python
renders it) and its vocabulary, loaded vocabulary-only (no weights, about a second for a 262k-token
vocabulary, once per backend). A model without a chat template in its file is not counted: such a
server formats its prompts in a format of its own choosing, which this side cannot know.

The count is what the reply's figures then show as the prompt's size, labelled as counted here
(``ReplyStats.prompt_count_source == "tokenizer"``); a server's own ``usage`` always wins over it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from tokrace.backends.base import ChatMessage
from tokrace.backends.chat_template import PromptFormat, choose_format
from tokrace.backends.prompt_tokens import tokenize_parts


class _ModelVocab:
    """A vocabulary-only ``LlamaModel`` as ``prompt_tokens.Vocab``."""

    def __init__(self, model: LlamaModel) -> None:
        self._model = model
        self.bos = model.token_bos()
        self.add_bos = bool(model.add_bos_token())

    def tokenize(self, text: str, special: bool) -> list[int]:
        return list(self._model.tokenize(text.encode("utf-8", errors="replace"), add_bos=False,
                                         special=special))

    def token_attr(self, token: int) -> int:
        return int(self._model.token_get_attr(token))

    def token_text(self, token: int) -> str:
        return self._model.token_get_text(token)


class GGUFPromptCounter:
    """Prompt tokens of a conversation as a llama.cpp-based server sees them, from the GGUF it serves.

    ``count`` loads the vocabulary on first use (raises ``ValueError`` when llama.cpp cannot read the
    file); it is thread-safe (``bench --concurrency`` counts from several threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._vocab: _ModelVocab | None = None
        self._format: PromptFormat | None = None

    def _load(self) -> tuple[_ModelVocab, PromptFormat]:
        if self._vocab is None or self._format is None:
            from tokrace.model_registry.gguf_meta import read_gguf_info

            info = read_gguf_info(self.path)
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            model = LlamaModel(path_model=self.path, params=params, verbose=False)
            vocab = _ModelVocab(model)

            def text_of(token: int) -> str:
                return model.token_get_text(token) if token >= 0 else ""

            def has_token(text: str) -> bool:
                ids = vocab.tokenize(text, special=True)
                return len(ids) == 1 and text_of(ids[0]) == text

            self._format = choose_format(architecture=info.architecture, file_template=info.chat_template,
                                         override=None, bos=text_of(model.token_bos()),
                                         eos=text_of(model.token_eos()), has_token=has_token)
            self._vocab = vocab
        return self._vocab, self._format

    def count(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the prompt ``messages`` become (BOS and the generation prompt included)."""
        with self._lock:
            vocab, fmt = self._load()
            return len(tokenize_parts(vocab, fmt.render(messages).pieces()))


def local_gguf_counter(server_model: str) -> GGUFPromptCounter | None:
    """A counter for a server whose model id is the path of a GGUF with a chat template on this machine
    (llama-cpp-python's server names its model so); ``None`` otherwise."""
    path = Path(server_model).expanduser()
    if path.suffix.lower() != ".gguf" or not path.is_file():
        return None
    from tokrace.model_registry.errors import TokraceError
    from tokrace.model_registry.gguf_meta import read_gguf_info

    try:
        if read_gguf_info(path).chat_template is None:
            return None
    except TokraceError:
        return None
    return GGUFPromptCounter(path)
