"""``bench URL --concurrency``: vLLM bench serve's figures (TTFT, TPOT, ITL, E2E, p50/p90/p99, goodput)
from exact synthetic replies, percentiles refused from too few samples, and failures reported per level
against a loopback server that serves one request at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from fake_openai_server import FakeServer

from tokrace.backends.meter import ReplyStats
from tokrace.cli.main import main
from tokrace.serving_metrics import Distribution, level_metrics, min_samples, parse_goodput, tpot_s


def reply(ttft: float, gaps: list[float], *, per_chunk: int = 1, error: str | None = None) -> ReplyStats:
    """A completed (or failed) reply: chunks ``gaps`` apart after ``ttft``, ``per_chunk`` tokens each."""
    times, t = [], ttft
    for gap in [0.0, *gaps]:
        t += gap
        times += [t] * per_chunk
    s = ReplyStats(completion_tokens=len(times), ttft_s=ttft, total_s=times[-1] + 0.001,
                   token_times_s=times, stop_reason="error" if error else "length", error=error)
    if len(times) >= 2 and times[-1] > times[0]:
        s.gen_tok_s = (len(times) - 1) / (times[-1] - times[0])
    return s


def test_percentiles_need_a_sample_beyond_them() -> None:
    assert [min_samples(q) for q in (50, 90, 99)] == [2, 10, 100]
    one = Distribution.of([0.2])
    assert one.n == 1 and one.mean == pytest.approx(200.0) and set(one.percentiles.values()) == {None}
    ten = Distribution.of([i / 1000 for i in range(1, 11)])  # 1 … 10 ms
    assert ten.percentiles["p50"] == pytest.approx(float(np.percentile(range(1, 11), 50)))  # numpy's, as vLLM
    assert ten.percentiles["p90"] == pytest.approx(9.1) and ten.percentiles["p99"] is None
    assert ten.cell() == "5.5 / 9.1 / –"


def test_level_figures_follow_vllm_bench_serve() -> None:
    # Two completed requests and one failure in a 2 s level.
    a = reply(0.100, [0.020] * 9)  # 10 tokens: E2E 0.281, TPOT (0.281 − 0.1) / 9
    b = reply(0.300, [0.040] * 3, per_chunk=2)  # 8 tokens in 4 chunks: 3 ITL gaps, not 7
    bad = reply(0.5, [], error="localhost:8080 failed (HTTP 503: busy)")
    level = level_metrics(4, 4, [a, b, bad], 2.0, parse_goodput(["ttft:200", "tpot:30"]))
    assert (level.requests, level.completed, level.failed, level.not_started) == (4, 2, 1, 1)
    assert level.first_error == "localhost:8080 failed (HTTP 503: busy)"
    assert level.output_tokens == 18 and level.output_throughput == pytest.approx(9.0)
    assert level.request_throughput == pytest.approx(1.0)
    assert tpot_s(a) == pytest.approx(0.181 / 9)
    assert level.tpot.n == 2 and level.tpot.mean == pytest.approx((0.181 / 9 + (0.421 - 0.3) / 7) / 2 * 1000)
    assert level.itl.n == 9 + 3 and level.itl.percentiles["p90"] == pytest.approx(40.0)
    assert level.ttft.percentiles["p50"] == pytest.approx(200.0) and level.ttft.percentiles["p90"] is None
    assert level.e2el.mean == pytest.approx((0.281 + 0.421) / 2 * 1000)
    # Goodput: only a meets TTFT ≤ 200 ms and TPOT ≤ 30 ms (b's TTFT is 300 ms): 1 request in 2 s.
    assert level.goodput == pytest.approx(0.5)
    with pytest.raises(ValueError, match="METRIC:MS"):
        parse_goodput(["itl:5"])


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer().start()
    yield s
    s.stop()


def test_failures_are_counted_and_said_and_one_survivor_gives_no_percentiles(
        server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    # A one-slot server: at concurrency 4 the requests that arrive while one streams are refused. The
    # row said p50/p99 from the one survivor and the errors were only in the log.
    url = f"{server.url}#busy"
    assert main(["bench", url, "--concurrency", "1,4", "-n", "6", "--requests", "4", "--json", "-q",
                 "--no-log"]) == 0
    captured = capsys.readouterr()
    one, four = json.loads(captured.out)
    assert (one["completed"], one["failed"], one["first_error"]) == (4, 0, None)
    assert one["ttft"]["percentiles"]["p50"] is not None and one["ttft"]["percentiles"]["p99"] is None
    assert one["itl"]["n"] == 4 * 5  # 6 chunks of one token each per request
    assert four["completed"] >= 1 and four["failed"] >= 1 and four["completed"] + four["failed"] == 4
    assert "HTTP 503" in four["first_error"] and "busy" in four["first_error"]
    if four["completed"] == 1:
        assert set(four["ttft"]["percentiles"].values()) == {None}
    assert f"concurrency 4: {four['failed']} of 4 requests failed; first error: " in captured.err
    # The table says it too.
    assert main(["bench", url, "--concurrency", "4", "-n", "2", "--requests", "4", "-q", "--no-log"]) == 0
    table = capsys.readouterr().out
    assert "| 4 | " in table and " of 4 | " in table and "concurrency 4: " in table and "first error" in table
