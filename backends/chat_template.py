"""Turning a conversation into a prompt, and saying how it was done.

Order of preference: a template the catalog supplies, the GGUF's own ``tokenizer.chat_template``, a
known template for the architecture (only for an instruction-tuned model whose vocabulary has that
template's special tokens), and last plain completion (the conversation's text as is). A file without
a template is usually a base model, and a base model answers as plain completion but not in a chat
format it never learned (measured with Gemma 3 270M: it echoes the question in Gemma's turn format).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_types import ChatCompletionRequestMessage

from tokrace.backends.base import ChatMessage

GEMMA_TEMPLATE = (
    # Gemma has no system role: system text goes in front of the first user turn, as Google's does.
    "{{ bos_token }}{% set sys = namespace(text='') %}"
    "{% for m in messages if m['role'] == 'system' %}{% set sys.text = sys.text + m['content'] + '\\n\\n' %}"
    "{% endfor %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ (sys.text if loop.first else '') + (m['content'] | trim) }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# architecture → (template name, template, special tokens it needs in the vocabulary, stop strings)
KnownTemplate = tuple[str, str, tuple[str, ...], tuple[str, ...]]
_GEMMA: KnownTemplate = ("gemma", GEMMA_TEMPLATE, ("<start_of_turn>", "<end_of_turn>"), ("<end_of_turn>",))
_CHATML: KnownTemplate = ("chatml", CHATML_TEMPLATE, ("<|im_start|>", "<|im_end|>"), ("<|im_end|>",))
KNOWN_TEMPLATES: dict[str, KnownTemplate] = {
    **dict.fromkeys(("gemma", "gemma2", "gemma3", "gemma3n"), _GEMMA),
    **dict.fromkeys(("qwen2", "qwen3", "qwen2moe", "qwen3moe"), _CHATML),
}


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    text: str
    stops: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PromptFormat:
    label: str
    """Shown in the UI: how this model's prompts are made."""
    render: Callable[[Sequence[ChatMessage]], RenderedPrompt]
    is_chat: bool


def _request_message(m: ChatMessage) -> ChatCompletionRequestMessage:
    """The message as llama-cpp-python's formatter takes it (one TypedDict per role)."""
    match m.role:
        case "system":
            return {"role": "system", "content": m.content}
        case "user":
            return {"role": "user", "content": m.content}
        case "assistant":
            return {"role": "assistant", "content": m.content}
        case _:
            assert_never(m.role)


def _jinja_format(label: str, template: str, bos: str, eos: str, extra_stops: Sequence[str] = ()
                  ) -> PromptFormat:
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def render(messages: Sequence[ChatMessage]) -> RenderedPrompt:
        result = formatter(messages=[_request_message(m) for m in messages])
        stops = tuple(dict.fromkeys([*(s for s in (result.stop or []) if s), *extra_stops]))
        return RenderedPrompt(result.prompt, stops)

    return PromptFormat(label=label, render=render, is_chat=True)


def plain_completion() -> PromptFormat:
    def render(messages: Sequence[ChatMessage]) -> RenderedPrompt:
        # A base model continues text: give it the conversation's text, turns separated by blank lines.
        return RenderedPrompt("\n\n".join(m.content for m in messages if m.role != "system"), ())

    return PromptFormat(label="plain completion (no chat template)", render=render, is_chat=False)


_INSTRUCT_WORDS = {"it", "instruct", "chat", "sft", "dpo", "rlhf"}


def looks_instruction_tuned(metadata: Mapping[str, Any], path: str | Path = "") -> bool:
    """From the GGUF's names and the file name: ``gemma-3-270m-it`` yes, ``gemma-3-270m`` no."""
    names = [str(metadata.get(k, "")) for k in ("general.finetune", "general.name", "general.basename")]
    words = re.split(r"[^a-z0-9]+", " ".join([*names, Path(path).stem]).lower())
    return any(w in _INSTRUCT_WORDS for w in words)


def choose_format(
    *,
    architecture: str,
    file_template: str | None,
    override: str | None,
    bos: str,
    eos: str,
    has_token: Callable[[str], bool],
    instruction_tuned: bool = True,
) -> PromptFormat:
    """Pick the prompt format for a model; ``has_token`` tells whether a string is one vocab token."""
    if override:
        return _jinja_format("catalog chat template", override, bos, eos)
    if file_template:
        return _jinja_format("chat template from the GGUF", file_template, bos, eos)
    known = KNOWN_TEMPLATES.get(architecture) if instruction_tuned else None
    if known is not None:
        name, template, needs, stops = known
        if all(has_token(t) for t in needs):
            return _jinja_format(f"{name} template (the GGUF has none)", template, bos, eos, stops)
    return plain_completion()
