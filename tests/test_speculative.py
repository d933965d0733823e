"""Speculative decoding on tiny generated GGUF pairs, through the real llama.cpp.

The target has the draft's two layers plus six "inert" ones (zero output projections): the same
function at four times the depth, so a greedy draft is always right (100% acceptance). Noise in the
inert layers makes the target disagree sometimes; a different vocabulary must be refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest
from tiny_gguf import write_tiny_llama

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams, LoadConfig
from tokrace.backends.draft_compat import ModelDrafter, PromptLookupDrafter, vocab_mismatch
from tokrace.backends.draft_setup import build_drafted_backend, draft_load_config
from tokrace.backends.events import DraftStep, GenerationFinished, StreamEvent, TokenGenerated
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import SpeedMeter
from tokrace.backends.speculative import AdaptiveK, SpeculativeBackend
from tokrace.load import DraftSpec
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import read_gguf_info

HELLO = [ChatMessage("user", "Hello there, tiny model.")]
GREEDY = GenerationParams(max_tokens=60, temperature=0.0)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pairs")


@pytest.fixture(scope="module")
def draft_path(pair_dir: Path) -> Path:
    return write_tiny_llama(pair_dir / "draft.gguf", n_layer=2, name="tiny-draft")


@pytest.fixture(scope="module")
def inert_target(pair_dir: Path) -> Path:
    return write_tiny_llama(pair_dir / "inert.gguf", n_layer=8, inert_from=2, name="tiny-inert")


@pytest.fixture(scope="module")
def noisy_target(pair_dir: Path) -> Path:
    return write_tiny_llama(pair_dir / "noisy.gguf", n_layer=8, inert_from=2, inert_noise=0.05,
                            name="tiny-noisy")


@pytest.fixture(scope="module")
def other_vocab(pair_dir: Path) -> Path:
    return write_tiny_llama(pair_dir / "other.gguf", n_layer=2, extra_tokens=8, name="tiny-other")


def plain(path: Path, **kw: bool) -> LlamaCppBackend:
    backend = LlamaCppBackend(LoadConfig(path=str(path), n_threads=2), **kw)
    backend.load()
    return backend


def speculative(target: Path, draft: Path | None, *, k: int = 4,
                adaptive: bool = False) -> SpeculativeBackend:
    drafter = (ModelDrafter(LoadConfig(path=str(draft), n_threads=2)) if draft is not None
               else PromptLookupDrafter())
    backend = SpeculativeBackend(LlamaCppBackend(LoadConfig(path=str(target), n_threads=2)), drafter,
                                 k=k, adaptive=adaptive)
    backend.load()
    return backend


def run(backend: LlamaCppBackend | SpeculativeBackend, messages: list[ChatMessage] = HELLO,
        params: GenerationParams = GREEDY, cancel: CancelToken | None = None) -> list[StreamEvent]:
    return list(backend.stream_chat(messages, params, cancel))


def tokens_of(events: list[StreamEvent]) -> list[int]:
    return [e.token_id for e in events if isinstance(e, TokenGenerated)]


def steps_of(events: list[StreamEvent]) -> list[DraftStep]:
    return [e for e in events if isinstance(e, DraftStep)]


def tokens_per_step(events: list[StreamEvent]) -> list[tuple[int, DraftStep | None]]:
    """(tokens emitted, the step's DraftStep) per verification step; a step that drafted nothing
    (one token left to make) has no DraftStep. The first token comes from the prompt: left out."""
    out: list[tuple[int, DraftStep | None]] = []
    n = -1
    for e in events:
        if isinstance(e, TokenGenerated):
            n += 1
        elif isinstance(e, DraftStep):
            out.append((n, e))
            n = 0
    if n > 0:
        out.append((n, None))
    return out


def finished_of(events: list[StreamEvent]) -> GenerationFinished:
    last = events[-1]
    assert isinstance(last, GenerationFinished)
    return last


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("which", ["inert_target", "noisy_target"])
def test_greedy_output_is_identical_to_plain_decoding(which: str, k: int, draft_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    target = request.getfixturevalue(which)
    expected = run(plain(target))
    events = run(speculative(target, draft_path, k=k))
    assert tokens_of(events) == tokens_of(expected)
    assert finished_of(events).text == finished_of(expected).text
    assert len(tokens_of(events)) == finished_of(events).completion_tokens == GREEDY.max_tokens
    assert [e.index for e in events if isinstance(e, TokenGenerated)] == list(range(GREEDY.max_tokens))


def test_seeded_sampling_gives_the_targets_reply(noisy_target: Path, draft_path: Path) -> None:
    # The target's sampler chain samples every position and its RNG runs once per emitted token, as
    # in plain decoding: the same seed gives the same reply, with or without the draft.
    params = GenerationParams(max_tokens=60, temperature=0.9, seed=11)
    expected = tokens_of(run(plain(noisy_target), params=params))
    assert tokens_of(run(speculative(noisy_target, draft_path, k=4), params=params)) == expected
    other = GenerationParams(max_tokens=60, temperature=0.9, seed=12)
    assert tokens_of(run(speculative(noisy_target, draft_path, k=4), params=other)) != expected


def test_inert_pair_accepts_everything_and_accounting_adds_up(inert_target: Path, draft_path: Path) -> None:
    events = run(speculative(inert_target, draft_path, k=4))
    steps = steps_of(events)
    drafted_tokens = [e for e in events if isinstance(e, TokenGenerated) and e.drafted]
    assert steps and all(s.accepted == s.drafted for s in steps)
    # Each step emits its k drafts plus the target's own next token; the last is cut to fit max_tokens.
    assert all(s.drafted == 4 for s in steps[:-1])
    assert all(n == step.accepted + 1 for n, step in tokens_per_step(events) if step is not None)
    assert len(drafted_tokens) == sum(s.accepted for s in steps)
    meter = SpeedMeter()
    for event in events:
        meter.observe(event)
    stats = meter.stats
    assert (stats.drafted, stats.accepted, stats.draft_steps) == (
        sum(s.drafted for s in steps), len(drafted_tokens), len(steps))
    assert stats.acceptance_rate == 1.0
    assert stats.gen_tok_s is not None and stats.gen_tok_s > 0


def test_noise_in_the_extra_layers_lowers_acceptance(noisy_target: Path, draft_path: Path) -> None:
    events = run(speculative(noisy_target, draft_path, k=4))
    steps = steps_of(events)
    drafted, accepted = sum(s.drafted for s in steps), sum(s.accepted for s in steps)
    assert 0 < accepted < 0.8 * drafted
    assert sum(1 for e in events if isinstance(e, TokenGenerated) and e.drafted) == accepted
    # A rejected step still moves on by one token: the target's own choice at the first mismatch.
    per_step = tokens_per_step(events)
    assert all(n == step.accepted + 1 for n, step in per_step if step is not None)
    assert 1 + sum(n for n, _ in per_step) == GREEDY.max_tokens


def _kv_end(backend: LlamaCppBackend) -> int:
    """One past the last position in the backend's KV cache (what llama.cpp holds, not our counter)."""
    llama = backend.llama
    return int(llama_cpp.llama_memory_seq_pos_max(llama._ctx.memory, 0)) + 1


def test_rejections_roll_both_caches_back(noisy_target: Path, draft_path: Path) -> None:
    backend = speculative(noisy_target, draft_path, k=6)
    target, draft = backend.target, backend.drafter
    assert isinstance(draft, ModelDrafter)
    prompt = target.tokenize_prompt(target.prompt_format.render(HELLO).text)
    first: list[StreamEvent] = []
    rejections = 0
    for event in backend.stream_chat(HELLO, GREEDY):
        first.append(event)
        if isinstance(event, DraftStep) and event.accepted < event.drafted:
            # Right after a rejection the target's cache holds the prompt and every token of the
            # reply but the newest (not evaluated yet), and nothing of the rejected drafts.
            rejections += 1
            emitted = len(tokens_of(first))
            assert _kv_end(target) == target.llama.n_tokens == len(prompt) + emitted - 1
    assert rejections > 0
    context = prompt + tokens_of(first)
    for side in (target, draft.backend):
        llama = side.llama
        assert _kv_end(side) == llama.n_tokens  # nothing rejected left behind in llama.cpp's cache
        assert list(llama.input_ids[: llama.n_tokens]) == context[: llama.n_tokens]
    assert target.llama.n_tokens >= len(context) - 1
    # The next turn reuses both caches and still matches a fresh plain backend.
    follow_up = [*HELLO, ChatMessage("assistant", finished_of(first).text), ChatMessage("user", "More?")]
    second = run(backend, follow_up)
    assert tokens_of(second) == tokens_of(run(plain(noisy_target), follow_up))


def test_draft_proposals_after_rollback_match_a_fresh_draft(draft_path: Path) -> None:
    used = ModelDrafter(LoadConfig(path=str(draft_path), n_threads=2))
    used.load()
    cancel = CancelToken()
    prompt = [1, *range(70, 90)]
    used.prefill(prompt, cancel)
    proposal = used.propose([*prompt, 100], 5)
    # The target took only the first two proposals, then its own token 7.
    context = [*prompt, 100, *proposal[:2], 7]
    fresh = ModelDrafter(LoadConfig(path=str(draft_path), n_threads=2))
    fresh.load()
    fresh.prefill(context[:-1], cancel)
    assert used.propose(context, 5) == fresh.propose(context, 5)
    assert _kv_end(used.backend) == used.backend.llama.n_tokens == len(context) + 4


def test_mismatched_vocabulary_is_refused_in_one_line(inert_target: Path, other_vocab: Path) -> None:
    target = LlamaCppBackend(LoadConfig(path=str(inert_target), n_threads=2))
    backend = SpeculativeBackend(target, ModelDrafter(LoadConfig(path=str(other_vocab), n_threads=2)))
    with pytest.raises(TokraceError) as err:
        backend.load()
    message = str(err.value)
    assert "\n" not in message
    assert "other.gguf cannot draft for inert.gguf" in message and "267 tokens" in message
    assert target._llama is None  # refused from the headers, before loading weights


def test_vocab_mismatch_compares_count_and_table(inert_target: Path, draft_path: Path) -> None:
    t, d = read_gguf_info(inert_target), read_gguf_info(draft_path)
    assert vocab_mismatch(t, d) is None
    assert "different token table" in (vocab_mismatch(t, replace(d, vocab_hash="0" * 64)) or "")
    assert "no token list" in (vocab_mismatch(t, replace(d, vocab_hash="")) or "")


class FailingDrafter(ModelDrafter):
    """A draft model that breaks on its third proposal (as a real one might run out of memory)."""

    calls = 0

    def propose(self, context: list[int], k: int) -> list[int]:  # type: ignore[override]
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("llama_decode returned -3")
        return super().propose(context, k)


def test_draft_failing_mid_reply_falls_back_to_plain_decoding(noisy_target: Path, draft_path: Path) -> None:
    drafter = FailingDrafter(LoadConfig(path=str(draft_path), n_threads=2))
    backend = SpeculativeBackend(LlamaCppBackend(LoadConfig(path=str(noisy_target), n_threads=2)),
                                 drafter, k=4)
    backend.load()
    events = run(backend)
    fin = finished_of(events)
    assert fin.stop_reason == "length" and fin.error is None
    assert fin.notice is not None and "failed mid-reply" in fin.notice and "without it" in fin.notice
    assert "llama_decode returned -3" in fin.notice
    assert len(steps_of(events)) == 2 and drafter.calls == 3  # not asked again after failing
    assert tokens_of(events) == tokens_of(run(plain(noisy_target)))
    # The next reply drafts again.
    assert len(steps_of(run(backend))) > 2


def test_prompt_lookup_proposes_what_followed_the_last_ngram() -> None:
    lookup = PromptLookupDrafter(max_ngram=3, min_ngram=1)
    lookup.prefill([], CancelToken())
    assert lookup.propose([5, 6, 7, 8, 9, 1, 5, 6, 7], 3) == [8, 9, 1]
    # The most recent earlier occurrence wins, and longer n-grams before shorter ones.
    assert lookup.propose([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 6, 7], 2) == [2, 3]
    assert lookup.propose([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 6, 7, 4, 4, 7], 2) == [4, 4]
    lookup.prefill([], CancelToken())
    assert lookup.propose([1, 2, 3, 4], 4) == []
    pairs_only = PromptLookupDrafter()  # the default ignores single-token matches
    assert pairs_only.propose([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 6, 7, 4, 4, 7], 2) == []
    assert pairs_only.propose([5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 6, 7], 2) == [2, 3]


def test_prompt_lookup_end_to_end(inert_target: Path) -> None:
    expected = tokens_of(run(plain(inert_target)))
    # Ask the model to repeat its own reply: lookup then finds it in the prompt.
    repeat = [ChatMessage("user", "Hello there, tiny model."), ChatMessage("assistant", "x")]
    events = run(speculative(inert_target, None, k=4), repeat)
    assert tokens_of(events) == tokens_of(run(plain(inert_target), repeat))
    events = run(speculative(inert_target, None, k=4))
    assert tokens_of(events) == expected
    steps = steps_of(events)
    assert steps and sum(1 for e in events if isinstance(e, TokenGenerated) and e.drafted) == sum(
        s.accepted for s in steps)


CODE = """def mean(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)


def variance(values):
    m = mean(values)
    total = 0
    for v in values:
        total += (v - m) ** 2
    return total / len(values)
"""


@pytest.mark.network
@pytest.mark.real_model
def test_prompt_lookup_on_a_real_code_edit(smollm2_path: Path) -> None:
    # Random tiny models do not copy; a real one editing code copies most of it from the prompt.
    messages = [ChatMessage("user", "Rename the function `mean` to `average` everywhere in this code."
                            " Reply with the full code only.\n\n" + CODE)]
    params = GenerationParams(max_tokens=80, temperature=0.0)
    config = LoadConfig(path=str(smollm2_path), n_ctx=1024, n_threads=2)
    backend = build_drafted_backend(config, lookup=True, k=8)
    backend.load()
    events = run(backend, messages, params)  # type: ignore[arg-type]
    steps = steps_of(events)
    drafted, accepted = sum(s.drafted for s in steps), sum(s.accepted for s in steps)
    completion = finished_of(events).completion_tokens
    assert drafted > 0 and accepted >= 15 and accepted >= completion / 3  # much of it came from lookup
    # Flash attention makes batched verification reproduce plain decoding exactly, quantized too.
    reference = LlamaCppBackend(config, flash_attn=True)
    reference.load()
    assert tokens_of(events) == tokens_of(run(reference, messages, params))


def test_target_is_not_created_with_logits_all(inert_target: Path, draft_path: Path) -> None:
    # A batch below the context (llama.cpp's default 2048 would equal this model's whole context).
    target = LlamaCppBackend(LoadConfig(path=str(inert_target), n_threads=2, n_batch=512))
    backend = SpeculativeBackend(target, ModelDrafter(LoadConfig(path=str(draft_path), n_threads=2)), k=8)
    backend.load()
    run(backend)
    llama = backend.target.llama
    assert llama._logits_all is False and llama.context_params.embeddings is False
    # llama-cpp-python's own logits mirror stays n_batch rows (n_ctx rows with logits_all).
    assert llama.scores.shape == (llama.n_batch, llama.n_vocab())
    assert llama.n_batch < llama.n_ctx()


def test_cancel_mid_reply_and_max_tokens_are_exact(inert_target: Path, draft_path: Path) -> None:
    backend = speculative(inert_target, draft_path, k=8)
    cancel = CancelToken()
    events: list[StreamEvent] = []
    for event in backend.stream_chat(HELLO, GREEDY, cancel):
        events.append(event)
        if isinstance(event, TokenGenerated) and event.index == 4:
            cancel.cancel()
    fin = finished_of(events)
    assert fin.stop_reason == "cancelled" and fin.completion_tokens == len(tokens_of(events)) == 5
    for n in (1, 2, 7, 9):
        events = run(backend, params=GenerationParams(max_tokens=n, temperature=0.0))
        assert finished_of(events).completion_tokens == len(tokens_of(events)) == n


def test_adaptive_k_shrinks_when_acceptance_falls(noisy_target: Path, draft_path: Path) -> None:
    k = AdaptiveK(8)
    assert [k.update(8, 8), k.update(8, 2), k.update(7, 1), k.update(6, 3), k.update(6, 6)] == [8, 7, 6, 6, 7]
    for _ in range(10):
        k.update(k.k, 0)
    assert k.k == 1
    backend = speculative(noisy_target, draft_path, k=8, adaptive=True)
    events = run(backend)
    assert backend.last_k < 8
    assert tokens_of(events) == tokens_of(run(plain(noisy_target)))
    assert steps_of(events)[0].drafted == 8


def test_builder_output_matches_plain_with_flash_attention(inert_target: Path, draft_path: Path) -> None:
    config = LoadConfig(path=str(inert_target), n_threads=2)
    draft = draft_load_config(config, str(draft_path), "draft.gguf")
    backend = build_drafted_backend(config, draft, k=3)
    assert isinstance(backend, SpeculativeBackend) and backend.target.flash_attn
    assert backend.plain is backend.target and backend.capabilities.draft is not None
    assert (backend.capabilities.draft.name, backend.capabilities.draft.k) == ("draft.gguf", 3)
    backend.load()
    assert tokens_of(run(backend)) == tokens_of(run(plain(inert_target, flash_attn=True)))
    assert isinstance(build_drafted_backend(config), LlamaCppBackend)
    assert build_drafted_backend(config).capabilities.draft is None
    # Contradicting settings are the application layer's to refuse, in the user's words.
    with pytest.raises(TokraceError, match="exclude each other"):
        DraftSpec(ref=str(draft_path), lookup=True).check()
    with pytest.raises(TokraceError, match="need"):
        DraftSpec(k=3).check()


def tokrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)


def test_chat_json_has_a_draft_object(inert_target: Path, draft_path: Path, other_vocab: Path) -> None:
    proc = tokrace("chat", "-m", str(inert_target), "--draft", str(draft_path), "--draft-k", "3",
                   "--prompt", "hi", "-n", "17", "--temp", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    draft = data["draft"]
    assert draft["model"] == "draft.gguf" and draft["k"] == 3 and draft["kind"] == "draft model"
    assert draft["drafted"] == draft["accepted"] == 12 and draft["acceptance_rate"] == 1.0
    assert draft["acceptance_rate_label"] == "accepted ÷ drafted"
    assert data["completion_tokens"] == 17 and data["drafted"] == 12
    proc = tokrace("chat", "-m", str(inert_target), "--lookup", "--prompt", "hi", "-n", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["draft"]["model"] == "prompt lookup"
    proc = tokrace("chat", "-m", str(inert_target), "--draft", str(other_vocab), "--prompt", "hi")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot draft for" in proc.stderr
    assert "--draft" in tokrace("--help").stdout
