"""``tokrace race A B``: two models answer the same prompt; a table and a verdict say which is faster.

Without ``--prompt`` it opens the TUI on the race screen. With it, the race runs headless: each lane's
reply, then the comparison table and the verdict on stdout (progress on stderr); ``--json`` prints one
object with a ``lanes`` list (the fields of ``tokrace chat --json``, plus ``lane``) and a ``verdict``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from tokrace.backends.base import MAX_DRAFT_K
from tokrace.backends.race import MODES, RaceResult
from tokrace.backends.race_lane import Lane, LaneResult
from tokrace.cli import common
from tokrace.cli.words import say
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.units import format_figure as _fmt
from tokrace.settings_args import setting_type

if TYPE_CHECKING:  # race_setup loads models (httpx, numpy, gguf): imported by run(), not by --help
    from tokrace.race_setup import RacePlan


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "race", help="two models, one prompt, side by side",
        description="Race two models on the same prompt and compare their speed. Without --prompt, "
                    "opens the race screen.",
    )
    p.add_argument("model_a", metavar="A", help="a .gguf path or catalog id")
    p.add_argument("model_b", metavar="B", help="a .gguf path or catalog id")
    p.add_argument("--prompt", "-p", default=None,
                   help="the user message ('-' reads stdin; default: none, opens the race screen)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="fair: one after the other, each with the whole machine (default on one device);"
                        " simultaneous: both at once (default on two GPUs or more)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--repeat", "-r", type=common.positive_int, default=1, metavar="N",
                   help="race the prompt N times (KV cache cleared each run); the verdict gives mean ± sd"
                        " over the runs and calls differences within that noise a tie (default: 1)")
    p.add_argument("--draft-a", default=None, metavar="D", help="a draft model for lane A")
    p.add_argument("--draft-b", default=None, metavar="D",
                   help="a draft model for lane B (race M M --draft-b D: the draft's speedup)")
    p.add_argument("--draft-k", type=setting_type("draft_k"), default=None, metavar="K",
                   help=f"tokens drafted per step for drafted lanes, 1 to {MAX_DRAFT_K} (default: 4)")
    common.add_generation_args(p)
    common.add_gpu_args(p)
    p.set_defaults(func=run)


def _lane_json(lane: Lane, result: LaneResult, price_per_hour: float | None = None) -> dict[str, Any]:
    from tokrace.backends.reply_extras import extras
    from tokrace.cli.chat_cmd import reply_json

    if lane.model is not None:
        data = reply_json(result.stats, lane.model, result.text)
    else:  # never loaded: the same keys, no file to describe
        data = {"text": "", "model": lane.ref, "prompt_tokens": None, "completion_tokens": 0, "ttft_s": None,
                "prompt_tok_s": None, "gen_tok_s": None, "stop_reason": result.stats.stop_reason}
        for key, value in result.stats.to_dict().items():
            data.setdefault(key, value)
        data["model"] = lane.ref
        data["model_file"] = None
    data["lane"] = lane.label
    data["title"] = lane.title
    data["ran"] = result.ran
    data["error"] = say(result.error) if result.error else None
    data["draft"] = lane.draft
    data.update(extras(result.stats, None, price_per_hour))  # $ per 1K tokens, as chat --json
    return data


def race_json(plan: RacePlan, race: RaceResult, price_per_hour: float | None = None) -> dict[str, Any]:
    return {
        "prompt": race.prompt,
        "mode": race.mode,
        "shared_device": race.shared_device,
        "threads_per_lane": plan.threads_per_lane,
        "memory": None if plan.guard is None else {
            "need_bytes": list(plan.guard.need_bytes), "free_bytes": plan.guard.free_bytes,
            "where": plan.guard.where, "fits_together": plan.guard.fits_together,
        },
        "notes": plan.notes,
        "cancelled": race.cancelled,
        "runs": len(race.runs),
        "price_per_hour": price_per_hour,
        "lanes": [_lane_json(lane, r, price_per_hour)
                  for lane, r in zip(plan.lanes, race.lanes, strict=True)],
        "verdict": race.verdict.to_dict(),
    }


def table(plan: RacePlan, race: RaceResult) -> str:
    head = ("lane", "model", "tokens", "tok/s", "TTFT", "prompt tok/s", "finish", "stop")
    rows = [head]
    for lane, r in zip(plan.lanes, race.lanes, strict=True):
        s = r.stats
        stop = "error" if r.error else ("not run" if not r.ran else str(s.stop_reason))
        rows.append((lane.label, lane.title, str(s.completion_tokens), _fmt(s.gen_tok_s, "{:.1f}"),
                     _fmt(s.ttft_s, "{:.3f} s"), _fmt(s.prompt_tok_s, "{:.0f}"),
                     _fmt(race.verdict.finish_s.get(lane.label), "{:.2f} s"), stop))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    right = {2, 3, 4, 5, 6}
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tokrace.load import LoadSpec

    settings = common.settings_for(args)  # settings.toml, overridden by this command's flags
    if args.prompt is None:
        if args.json:
            raise TokraceError("--json needs --prompt (without a prompt, tokrace race opens the TUI)",
                               kind="usage")
        from tokrace.tui.app import TokraceApp
        from tokrace.tui.race.setup import RaceSetup

        setup = RaceSetup(refs=[args.model_a, args.model_b], mode=args.mode, threads=settings.n_threads,
                          request=settings.placement_request(), drafts=(args.draft_a, args.draft_b),
                          draft_k=settings.draft_k, base=LoadSpec.from_settings(settings),
                          system=settings.system_prompt)
        TokraceApp(settings=settings, race=setup).run()
        return 0

    from tokrace.backends.base import CancelToken
    from tokrace.backends.device_telemetry import detect_gpus
    from tokrace.backends.race import run_race
    from tokrace.race_setup import check_lanes, plan_race, record_race

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    gpus = detect_gpus()
    if not prompt.strip():
        raise TokraceError("the prompt is empty: give --prompt some text", kind="usage")
    # Every model and draft is resolved, checked and placed before anything runs (strict): a bad lane
    # B stops the race before lane A spends a minute generating.
    plan = plan_race([args.model_a, args.model_b], mode=args.mode, threads=settings.n_threads,
                     base=LoadSpec.from_settings(settings), system=settings.system_prompt,
                     request=settings.placement_request(), gpus=gpus,
                     progress=common.StderrProgress(), drafts=(args.draft_a, args.draft_b),
                     draft_k=settings.draft_k, strict=True)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if not plan.load_in_turn:  # both resident: load both (llama.cpp may still refuse a file) first
        for lane in plan.lanes:
            lane.load()
        try:
            check_lanes(plan.lanes)
        except TokraceError:
            for lane in plan.lanes:
                lane.unload()
            raise
    cancel = CancelToken()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.cancel())  # Ctrl+C stops both lanes
    price = settings.price_per_hour
    try:
        race = run_race(plan.lanes, prompt, settings.generation_params(), mode=plan.mode, cancel=cancel,
                        shared_device=plan.shared_device, load_in_turn=plan.load_in_turn,
                        ceilings=_ceilings(plan), repeat=args.repeat, price_per_hour=price)
    finally:
        signal.signal(signal.SIGINT, previous)
    # After the race, not as each lane ends: a recorder hashes the model file on a thread, which would
    # steal CPU from a lane still racing. Every run is a real reply: all go to the log.
    for run_results in race.runs:
        for error in record_race(plan.lanes, run_results, sampling=settings.generation_params()):
            print(f"note: speed log not written: {error}", file=sys.stderr)
    for lane in plan.lanes:
        lane.unload()
    if args.json:
        print(json.dumps(race_json(plan, race, price), ensure_ascii=False))
    else:
        for lane, r in zip(plan.lanes, race.lanes, strict=True):
            print(f"── {lane.label} · {lane.title} ──")
            print(r.text if r.ran else f"({say(r.error or 'not run')})")
            print()
        print(table(plan, race))
        print()
        print(f"mode: {plan.describe()}")
        for line in race.verdict.lines:
            print(line)
    failed = [r for r in race.lanes if r.error]
    for r in failed:
        print(f"tokrace: error: lane {r.label}: {say(r.error or '')}", file=sys.stderr)
    if failed:
        return 2
    return 130 if race.cancelled else 0


def _ceilings(plan: RacePlan) -> dict[str, float | None] | None:
    """The CPU roofline is measured once per machine and cached; only CPU lanes use it here."""
    if any(lane.plan is not None and lane.plan.per_device for lane in plan.lanes):
        return None  # GPU bandwidths come from NVML samples in the TUI; headless we skip the roofline
    from tokrace.backends.roofline import cpu_bandwidth
    from tokrace.race_setup import lane_ceilings

    return lane_ceilings(plan.lanes, None, cpu_bandwidth().bytes_per_s)
