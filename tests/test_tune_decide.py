"""``tokrace tune``'s verdicts on synthetic timings: winners, ties inside the noise, the baseline kept."""

from __future__ import annotations

import pytest

from tokrace.tune_decide import MIN_GAIN, decide, ratio_interval, verdict


def test_a_clear_win_in_every_round_is_faster_and_wins() -> None:
    d = decide({"2": [20.0, 19.0, 21.0], "1": [12.0, 11.5, 12.4]}, baseline="1")
    assert d.winner == "2" and d.changed
    two = d.result("2")
    assert two.verdict == "faster" and two.ratio == pytest.approx(20 / 12)
    assert (two.ratio_low, two.ratio_high) == pytest.approx((19 / 11.5, 21 / 12.4), rel=1e-3)
    assert d.result("1").verdict == "baseline"


def test_a_difference_inside_the_noise_is_a_tie_and_keeps_the_baseline() -> None:
    # The candidate is ahead on median but one round has it behind: the ratio interval holds 1.
    d = decide({"f16": [10.0, 10.2, 9.9], "q8_0": [10.4, 9.8, 10.3]}, baseline="f16")
    assert d.result("q8_0").verdict == "tie" and d.winner == "f16" and not d.changed


def test_rounds_that_agree_by_chance_while_speeds_jump_about_are_a_tie() -> None:
    # Every paired ratio is above 1, but each candidate's own speed swings far more than the gap:
    # a busy machine, not a winner.
    d = decide({"a": [100.0, 20.0, 60.0], "b": [104.0, 21.0, 63.0]}, baseline="a")
    assert d.result("b").ratio_low > 1 + MIN_GAIN
    assert d.result("b").verdict == "tie" and d.winner == "a"


def test_a_gain_below_the_minimum_worth_changing_for_is_a_tie() -> None:
    d = decide({"512": [100.0, 100.1, 100.0], "256": [100.5, 100.6, 100.5]}, baseline="512")
    assert d.result("256").verdict == "tie" and d.winner == "512"
    assert decide({"512": [100.0, 100.1, 100.0], "256": [100.5, 100.6, 100.5]}, baseline="512",
                  min_gain=0.001).winner == "256"


def test_slower_candidates_are_named_slower_and_the_fastest_of_several_wins() -> None:
    d = decide({"4": [30.0, 31.0, 30.5], "2": [25.0, 25.5, 25.2], "6": [34.0, 35.0, 34.2],
                "8": [36.0, 36.5, 36.1]}, baseline="4")
    assert d.result("2").verdict == "slower"
    assert d.result("6").verdict == d.result("8").verdict == "faster"
    assert d.winner == "8"


def test_a_reference_row_is_judged_but_never_chosen() -> None:
    d = decide({"no draft": [50.0, 51.0, 50.5], "k=4": [30.0, 30.5, 30.2], "k=2": [35.0, 35.4, 35.1]},
               baseline="k=4", eligible=["k=4", "k=2"])
    assert d.result("no draft").verdict == "faster" and d.winner == "k=2"


def test_one_round_tells_nothing_every_candidate_ties() -> None:
    d = decide({"a": [10.0], "b": [20.0]}, baseline="a")
    assert d.result("b").verdict == "tie" and d.winner == "a"


def test_one_disturbed_round_in_six_does_not_veto_a_clear_result() -> None:
    base = [10.0, 10.1, 10.0, 9.9, 10.0, 10.1]
    cand = [12.0, 12.1, 12.0, 9.0, 12.1, 12.0]  # round 4: the machine was busy during the candidate
    assert ratio_interval([c / b for c, b in zip(cand, base, strict=True)])[0] > 1.1
    assert verdict(cand, base) == "faster"
    # With 3 rounds the disturbed one counts: nothing can be told.
    assert verdict(cand[2:5], base[2:5]) == "tie"


@pytest.mark.parametrize("samples, baseline", [
    ({"a": [1.0, 2.0]}, "b"),
    ({"a": [1.0, 2.0], "b": [1.0]}, "a"),
    ({"a": [], "b": []}, "a"),
    ({"a": [1.0, 0.0], "b": [1.0, 1.0]}, "a"),
])
def test_bad_samples_are_refused(samples: dict[str, list[float]], baseline: str) -> None:
    with pytest.raises(ValueError):
        decide(samples, baseline)
