"""``Session.turn``: the one reply loop of every front end (tokrace/turn.py, backends/reply_run.py).

Each test drives a ``Turn`` headless, the way the chat CLI does, on a scripted engine: the contract
(one ``GenerationFinished``, last; a broken backend becomes an error reply), the context fit and its
retries, the device window, the A/B variant on the plain backend, and the single record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from scripted_backend import ScriptedBackend
from test_chat_context import ContextBackend  # a 200-token context that refuses what does not fit

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams
from tokrace.backends.events import GenerationFinished, StreamEvent, TokenGenerated
from tokrace.backends.reply_run import ReplyRun
from tokrace.session import Session
from tokrace.turn import ContextFit

PARAMS = GenerationParams(max_tokens=8)


class Breaking(ScriptedBackend):
    """Yields ``after`` events of a normal reply, then raises (or just stops, with ``stop``)."""

    def __init__(self, after: int, *, stop: bool = False) -> None:
        super().__init__(["one ", "two ", "three"])
        self.after, self.stop = after, stop

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        for i, event in enumerate(super().stream_chat(messages, params, cancel)):
            if i == self.after:
                if self.stop:
                    return
                raise RuntimeError("engine exploded")
            yield event


def events_of(turn: object) -> list[StreamEvent]:
    return list(turn)  # type: ignore[call-overload]


@pytest.mark.parametrize("stop", [False, True])
def test_a_backend_that_breaks_mid_reply_becomes_one_error_reply(stop: bool) -> None:
    session = Session(Breaking(after=3, stop=stop), record=False)
    turn = session.turn(PARAMS, messages=[ChatMessage("user", "hi")])
    events = events_of(turn)
    finished = [e for e in events if isinstance(e, GenerationFinished)]
    assert len(finished) == 1 and events[-1] is finished[0] is turn.finished
    assert finished[0].stop_reason == "error"
    assert finished[0].text == "one "  # the text produced before it broke is kept
    assert turn.stats.completion_tokens == 1 and turn.stats.stop_reason == "error"
    assert ("engine exploded" in (finished[0].error or "")) is not stop


def test_reply_run_keeps_every_event_with_its_timestamp_for_a_replay() -> None:
    backend = ScriptedBackend(["a", "b", "c"])
    run = ReplyRun(lambda: backend.stream_chat([ChatMessage("user", "x")], PARAMS), keep_events=True)
    finished = run.run()
    assert finished.text == "abc" and run.stats.completion_tokens == 3
    assert [type(e).__name__ for e in run.events][-1] == "GenerationFinished"
    assert [e.t for e in run.events if isinstance(e, TokenGenerated)] == sorted(
        e.t for e in run.events if isinstance(e, TokenGenerated))


def test_a_turn_needs_exactly_one_request() -> None:
    session = Session(ScriptedBackend(["a"]), record=False)
    with pytest.raises(ValueError):
        session.turn(PARAMS)
    with pytest.raises(ValueError):
        session.turn(PARAMS, messages=[ChatMessage("user", "x")], prompt="x")


def history(n: int) -> list[ChatMessage]:
    out = [ChatMessage("system", "be brief")]
    for i in range(n):
        out += [ChatMessage("user", f"q{i} " + "x" * 60), ChatMessage("assistant", f"a{i} " + "y" * 60)]
    return [*out, ChatMessage("user", "last " + "z" * 60)]


def test_a_refused_request_is_trimmed_and_sent_again_under_rolling() -> None:
    backend = ContextBackend(["ok"])
    session = Session(backend, record=False)
    fit = ContextFit(history(4), "rolling")
    turn = session.turn(PARAMS, fit=fit)
    events = events_of(turn)
    assert turn.finished is not None and turn.finished.stop_reason == "stop" and turn.text == "ok"
    # One refusal, then a request that fits; the front end sees one reply end.
    assert len(backend.requests) == 2
    assert sum(isinstance(e, GenerationFinished) for e in events) == 1
    assert fit.skip > 0 and turn.sent[0].role == "system" and turn.sent[1].role == "user"
    assert turn.sent == backend.requests[-1]
    assert turn.overflow is not None and f"{fit.skip} message(s)" in turn.overflow
    assert turn.stats.prompt_tokens < ContextBackend.N_CTX  # the meter measured the request that ran


def test_under_stop_a_refusal_says_what_to_do_and_is_not_sent_again() -> None:
    backend = ContextBackend(["ok"])
    turn = Session(backend, record=False).turn(PARAMS, fit=ContextFit(history(4), "stop"))
    events = events_of(turn)
    assert len(backend.requests) == 1
    assert isinstance(events[-1], GenerationFinished) and events[-1] is turn.finished
    assert turn.finished.stop_reason == "error" and "{action:new_chat}" in (turn.finished.error or "")
    assert turn.overflow is None


def test_the_last_context_used_trims_before_the_first_request() -> None:
    backend = ContextBackend(["ok"])
    fit = ContextFit(history(4), "rolling", used=190)
    turn = Session(backend, record=False).turn(PARAMS, fit=fit)
    events_of(turn)
    # Trimmed up front, from the estimate: the first request already leaves turns out.
    assert len(backend.requests[0]) < len(fit.history) and fit.skip > 0 and turn.text == "ok"


class Window:
    peak_vram_bytes = 1234
    energy_j = 5.0


class Sampler:
    def __init__(self) -> None:
        self.begun = self.ended = 0

    def begin_window(self) -> int:
        self.begun += 1
        return 7

    def end_window(self, wid: int) -> Window:
        assert wid == 7
        self.ended += 1
        return Window()


def test_the_device_window_spans_the_reply() -> None:
    sampler = Sampler()
    turn = Session(ScriptedBackend(["a"]), record=False).turn(
        PARAMS, messages=[ChatMessage("user", "x")], device=sampler)  # type: ignore[arg-type]
    assert sampler.begun == 0  # nothing runs before it is iterated
    events_of(turn)
    assert (sampler.begun, sampler.ended) == (1, 1) and turn.window is not None


class Drafted(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__(["d"])
        self.twin = ScriptedBackend(["p"])

    @property
    def plain(self) -> ScriptedBackend:
        return self.twin


def test_plain_runs_the_ab_rerun_on_the_same_model_without_its_draft() -> None:
    backend = Drafted()
    session = Session(backend, record=False)
    turn = session.turn(PARAMS, messages=[ChatMessage("user", "x")], plain=True)
    events_of(turn)
    assert turn.rerun and turn.text == "p" and backend.twin.requests and not backend.requests


class Recorder:
    session_id = "s1"

    def __init__(self) -> None:
        self.records: list[tuple[object, dict[str, object]]] = []

    def record(self, stats: object, **kw: object) -> str:
        self.records.append((stats, kw))
        return "record"


def test_a_turn_is_recorded_once_with_its_window_and_sampling(tmp_path: Path) -> None:
    session = Session(ScriptedBackend(["a"]), record=False)
    recorder = Recorder()
    session._recorder = recorder  # type: ignore[assignment]
    sampler = Sampler()
    turn = session.turn(PARAMS, messages=[ChatMessage("user", "x")], device=sampler)  # type: ignore[arg-type]
    assert turn.record() is None and not recorder.records  # not finished: nothing to record
    events_of(turn)
    assert turn.record() == "record" and turn.record() is None
    assert len(recorder.records) == 1
    stats, kw = recorder.records[0]
    assert stats is turn.stats
    assert kw == {"peak_vram_bytes": 1234, "energy_j": 5.0, "sampling": PARAMS}


def test_a_failed_request_before_its_first_token_is_not_logged() -> None:
    session = Session(ContextBackend(["ok"]), record=False)
    recorder = Recorder()
    session._recorder = recorder  # type: ignore[assignment]
    turn = session.turn(PARAMS, fit=ContextFit(history(4), "stop"))
    events_of(turn)
    assert turn.record() is None and not recorder.records


def test_a_raw_prompt_turn_uses_stream_prompt() -> None:
    class Raw(ScriptedBackend):
        prompts: list[str] = []

        def stream_prompt(self, prompt: str, params: GenerationParams, cancel: CancelToken | None = None,
                          *, stops: Sequence[str] = ()) -> Iterator[StreamEvent]:
            self.prompts.append(prompt)
            return super().stream_chat([ChatMessage("user", prompt)], params, cancel)

    backend = Raw(["x"])
    turn = Session(backend, record=False).turn(PARAMS, prompt="The capital of France is")
    events_of(turn)
    assert backend.prompts == ["The capital of France is"] and turn.text == "x"
