"""Choosing how a conversation becomes a prompt, and saying which."""

from __future__ import annotations

from tokrace.backends.base import ChatMessage
from tokrace.backends.chat_template import choose_format, looks_instruction_tuned

GEMMA_VOCAB = {"<start_of_turn>", "<end_of_turn>"}


def pick(arch: str, *, file_template=None, override=None, instruct=True, vocab=GEMMA_VOCAB):
    return choose_format(architecture=arch, file_template=file_template, override=override, bos="<bos>",
                         eos="<eos>", has_token=vocab.__contains__, instruction_tuned=instruct)


def test_file_template_wins_over_known_ones() -> None:
    fmt = pick("gemma3", file_template="{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    assert fmt.label == "chat template from the GGUF"
    assert fmt.render([ChatMessage("user", "hi")]).text == "[hi]"


def test_catalog_override_wins_over_everything() -> None:
    fmt = pick("gemma3", file_template="x", override="<{{ messages[0]['content'] }}>")
    assert fmt.label == "catalog chat template"
    assert fmt.render([ChatMessage("user", "hi")]).text == "<hi>"


def test_instruction_tuned_gemma_without_template_gets_gemma_turns() -> None:
    fmt = pick("gemma3")
    assert fmt.label.startswith("gemma template")
    rendered = fmt.render([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])
    assert rendered.text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert "<end_of_turn>" in rendered.stops


def test_base_model_without_template_is_plain_completion() -> None:
    fmt = pick("gemma3", instruct=False)
    assert fmt.label.startswith("plain completion")
    assert not fmt.is_chat
    messages = [ChatMessage("system", "ignored"), ChatMessage("user", "The capital of France is")]
    text = fmt.render(messages).text
    assert text == "The capital of France is"


def test_known_template_needs_its_tokens_in_the_vocabulary() -> None:
    assert pick("gemma3", vocab=set()).label.startswith("plain completion")
    assert pick("llama").label.startswith("plain completion")  # no known template for plain llama


def test_instruction_tuned_is_read_from_names() -> None:
    assert looks_instruction_tuned({"general.name": "Gemma 3 270m"}, "gemma-3-270m-it-Q4_K_M.gguf")
    assert looks_instruction_tuned({"general.finetune": "Instruct"}, "model.gguf")
    assert not looks_instruction_tuned({"general.name": "Gemma 3 270m"}, "gemma-3-270m-q4_k_m.gguf")
    assert not looks_instruction_tuned({}, "digits-7b.gguf")  # "it" must be a whole word


def test_plain_completion_says_when_it_drops_the_system_prompt() -> None:
    from tokrace.backends.chat_template import SYSTEM_NOT_SENT, plain_completion

    fmt = plain_completion()
    with_system = fmt.render([ChatMessage("system", "be brief"), ChatMessage("user", "Once upon")])
    assert with_system.text == "Once upon" and with_system.notice == SYSTEM_NOT_SENT
    assert fmt.render([ChatMessage("user", "Once upon")]).notice is None
    assert fmt.render([ChatMessage("system", "  "), ChatMessage("user", "x")]).notice is None
