"""Turning a conversation into a prompt, and saying how it was done.

Order of preference: a template the catalog supplies, the GGUF's own ``tokenizer.chat_template``, a
known template for the architecture (only for an instruction-tuned model whose vocabulary has that
template's special tokens), and last plain completion (the conversation's text as is). A file without
a template is usually a base model, and a base model answers as plain completion but not in a chat
format it never learned (measured with Gemma 3 270M: it echoes the question in Gemma's turn format).

A template is tried at load on a small conversation. One that does not compile or does not render
falls to the next choice, and the label says why; one that refuses a system message (Gemma 2's
``raise_exception('System role not supported')``) gets the system text in front of the first user
message instead, as Google's own format does. Every conversation is normalised before it is rendered
(one leading system message, roles alternating: consecutive turns of one role are joined), so a strict
template never sees ``user, user`` after a reply that produced nothing.

A rendered prompt keeps apart the template's own markup and the messages' text (``parts``): the
backend parses special tokens in the markup only, so a user who types ``<|im_end|>`` sends text, not
a control token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, assert_never

import llama_cpp.llama_chat_format as llama_chat_format
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

Part = tuple[str, bool]
"""A piece of a rendered prompt: ``(text, is_markup)``. Markup is the template's own text (special
tokens are parsed in it); the rest is message text (never parsed for special tokens)."""


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    text: str
    stops: tuple[str, ...]
    parts: tuple[Part, ...] = ()
    """``text`` cut into markup and message text (joined they give ``text``); empty: all markup."""
    notice: str | None = None
    """Something the user should know about this rendering (a fallback), shown with the reply."""

    def pieces(self) -> tuple[Part, ...]:
        return self.parts or ((self.text, True),)


@dataclass(frozen=True, slots=True)
class PromptFormat:
    label: str
    """Shown in the UI: how this model's prompts are made."""
    render: Callable[[Sequence[ChatMessage]], RenderedPrompt]
    is_chat: bool
    turn_end: str = ""
    """The markup the template writes right after an assistant message (``<|im_end|>\\n`` for
    ChatML): the backend stops a reply there even when the metadata does not call it end of turn."""
    warning: str | None = None
    """What went wrong with the model's own template and what is used instead (shown once)."""


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


def normalise(messages: Sequence[ChatMessage], *, fold_system: bool = False) -> list[ChatMessage]:
    """The conversation as any template accepts it: system text first (in one message), then turns
    whose roles alternate (consecutive messages of one role joined by a blank line). With
    ``fold_system`` the system text goes in front of the first user message instead."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns: list[ChatMessage] = []
    for m in messages:
        if m.role == "system":
            continue
        if turns and turns[-1].role == m.role:
            joined = "\n\n".join(t for t in (turns[-1].content, m.content) if t)
            turns[-1] = ChatMessage(m.role, joined)
        else:
            turns.append(m)
    if not system:
        return turns
    if not fold_system:
        return [ChatMessage("system", system), *turns]
    first_user = next((i for i, m in enumerate(turns) if m.role == "user"), None)
    if first_user is None:
        return [ChatMessage("user", system), *turns]
    turns[first_user] = ChatMessage("user", f"{system}\n\n{turns[first_user].content}")
    return turns


_SENTINEL = "\ue000{}\ue001"
_SENTINEL_RE = re.compile("\ue000(\\d+)\ue001")


def _split_parts(text: str, template_text: str, contents: Sequence[str]) -> tuple[Part, ...]:
    """Cut ``text`` into markup and message text. ``template_text`` is the same template rendered with
    placeholders for the contents: where substituting them gives ``text`` back, the cut is exact.
    Otherwise (the template transformed a content) each content is looked for in order, as is or
    trimmed; a content not found stays inside markup."""
    pieces = _SENTINEL_RE.split(template_text)
    parts: list[Part] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            parts.append((piece, True))
        else:
            parts.append((contents[int(piece)], False))
    if "".join(p for p, _ in parts) == text:
        return tuple((p, m) for p, m in parts if p)
    parts, pos = [], 0
    for content in contents:
        for candidate in (content, content.strip()):
            at = text.find(candidate, pos) if candidate else -1
            if at >= 0:
                parts += [(text[pos:at], True), (candidate, False)]
                pos = at + len(candidate)
                break
    parts.append((text[pos:], True))
    return tuple((p, m) for p, m in parts if p)


class TemplateFailed(Exception):
    """A chat template did not compile or did not render this conversation."""


def _first_line(err: BaseException) -> str:
    said = str(err).strip().splitlines()
    text = said[0] if said else type(err).__name__
    return text if len(text) <= 60 else text[:59] + "…"


class _Jinja:
    """One compiled template and how to call it (raising ``TemplateFailed``)."""

    def __init__(self, template: str, bos: str, eos: str) -> None:
        try:
            self.formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        except Exception as err:  # jinja2's TemplateSyntaxError and anything a bad template raises
            raise TemplateFailed(f"does not compile: {_first_line(err)}") from None

    def __call__(self, messages: Sequence[ChatMessage]) -> tuple[str, list[str]]:
        try:
            result = self.formatter(messages=[_request_message(m) for m in messages])
        except Exception as err:  # raise_exception(), undefined names, type errors in the template
            raise TemplateFailed(_first_line(err)) from None
        if not isinstance(result.prompt, str):
            raise TemplateFailed("it did not render text")
        return result.prompt, [s for s in (result.stop or []) if s]

    def render(self, messages: Sequence[ChatMessage], extra_stops: Sequence[str]) -> RenderedPrompt:
        text, stops = self(messages)
        placeholders = [replace(m, content=_SENTINEL.format(i)) for i, m in enumerate(messages)]
        try:
            template_text, _ = self(placeholders)
        except TemplateFailed:
            template_text = ""
        parts = _split_parts(text, template_text, [m.content for m in messages])
        return RenderedPrompt(text, tuple(dict.fromkeys([*stops, *extra_stops])), parts)

    def turn_end(self) -> str:
        """The markup between an assistant message and the next user message ('' if unknown)."""
        probe = [ChatMessage("user", _SENTINEL.format(0)), ChatMessage("assistant", _SENTINEL.format(1)),
                 ChatMessage("user", _SENTINEL.format(2))]
        try:
            text, _ = self(probe)
        except TemplateFailed:
            return ""
        start, end = text.find(_SENTINEL.format(1)), text.find(_SENTINEL.format(2))
        if start < 0 or end < start:
            return ""
        return text[start + len(_SENTINEL.format(1)): end]


_PROBE_SYSTEM = [ChatMessage("system", "s"), ChatMessage("user", "u"), ChatMessage("assistant", "a"),
                 ChatMessage("user", "u")]


def _jinja_format(label: str, template: str, bos: str, eos: str, fallback: PromptFormat,
                  extra_stops: Sequence[str] = ()) -> PromptFormat:
    """A format from a Jinja template, tried at load; raises ``TemplateFailed`` when it cannot render
    even a plain user/assistant conversation."""
    jinja = _Jinja(template, bos, eos)
    jinja(normalise(_PROBE_SYSTEM[1:]))
    fold = False
    try:
        jinja(normalise(_PROBE_SYSTEM))
    except TemplateFailed:
        jinja(normalise(_PROBE_SYSTEM, fold_system=True))  # raises if it fails without a system too
        fold = True
        label += " (no system role: system text goes before the first user message)"

    def render(messages: Sequence[ChatMessage]) -> RenderedPrompt:
        try:
            return jinja.render(normalise(messages, fold_system=fold), extra_stops)
        except TemplateFailed as err:
            rendered = fallback.render(messages)
            notice = (f"the chat template failed on this conversation ({err}); this reply used"
                      f" {fallback.label}")
            return replace(rendered, notice="; ".join(n for n in (notice, rendered.notice) if n))

    warning = ("the model's chat template takes no system message: the system text goes in front of the"
               " first user message") if fold else None
    return PromptFormat(label=label, render=render, is_chat=True, turn_end=jinja.turn_end(), warning=warning)


SYSTEM_NOT_SENT = ("the system prompt was not sent: without a chat template the model runs as plain"
                   " completion, which continues the conversation's text and has no place for a system"
                   " message")
"""The notice of every plain-completion reply whose conversation had a system prompt (chat, race, CLI
and the speed log say it alike)."""


def system_prompt_notice(messages: Sequence[ChatMessage]) -> str | None:
    """How a system prompt applies to a plain-completion model: it does not (a base model has no
    system role, and text put in front of the prompt would change what it continues); so a conversation
    with one gets ``SYSTEM_NOT_SENT`` as its reply's notice instead of losing it silently."""
    return SYSTEM_NOT_SENT if any(m.role == "system" and m.content.strip() for m in messages) else None


def plain_completion(label: str = "plain completion (no chat template)") -> PromptFormat:
    def render(messages: Sequence[ChatMessage]) -> RenderedPrompt:
        # A base model continues text: give it the conversation's text, turns separated by blank lines.
        text = "\n\n".join(m.content for m in messages if m.role != "system")
        return RenderedPrompt(text, (), ((text, False),) if text else (),
                              notice=system_prompt_notice(messages))

    return PromptFormat(label=label, render=render, is_chat=False)


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
    """Pick the prompt format for a model; ``has_token`` tells whether a string is one vocab token.

    Never raises: a template that fails at load gives way to the next choice, and the label of the
    format chosen says which template failed and why."""
    fallback = plain_completion()
    known = KNOWN_TEMPLATES.get(architecture)
    if known is not None and all(has_token(t) for t in known[2]) and (
            instruction_tuned or file_template or override):
        name, template, _needs, stops = known
        fallback = _jinja_format(f"{name} template", template, bos, eos, fallback, stops)
    failed: list[str] = []
    candidates = (("catalog chat template", override), ("chat template from the GGUF", file_template))
    for label, source in candidates:
        if not source:
            continue
        try:
            fmt = _jinja_format(label, source, bos, eos, fallback)
        except TemplateFailed as err:
            failed.append(f"the {label} is broken, {err}")
            continue
        if failed:
            return replace(fmt, label=f"{fmt.label}; {failed[0]}",
                           warning="; ".join([*failed, f"using the {label}"]))
        return fmt
    if failed:
        name = fallback.label.split(" (")[0]
        return replace(fallback, label=f"{name} ({'; '.join(failed)})",
                       warning="; ".join([*failed, f"using {name}"]))
    if fallback.is_chat and instruction_tuned:
        return replace(fallback, label=f"{fallback.label} (the GGUF has none)")
    return fallback


class _LenientFormatter(Jinja2ChatFormatter):
    """What ``Llama(...)`` compiles the file's chat templates with. llama-cpp-python builds a chat
    handler from every template in the metadata at load, and a template with a syntax error would
    make the whole load fail; tokrace never uses those handlers (``chat_template.choose_format``
    tries the template itself and says what it does instead), so a broken one compiles to ''."""

    def __init__(self, template: str, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(template, *args, **kwargs)
        except Exception:  # jinja2.TemplateSyntaxError and whatever else a bad template raises
            super().__init__("", *args, **kwargs)


def tolerate_broken_templates_at_load() -> None:
    """Make ``Llama(...)`` compile the file's templates with ``_LenientFormatter`` (idempotent)."""
    llama_chat_format.Jinja2ChatFormatter = _LenientFormatter  # type: ignore[misc]
