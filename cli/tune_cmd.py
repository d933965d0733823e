"""``tokrace tune MODEL [--draft D]``: measure the fastest settings for this machine and model (threads,
flash attention, physical batch, KV cache type; with a draft, k and p-min) and, with ``--write``, save
them to ``settings.toml``. The measuring is ``tokrace.tune``'s; this module parses and prints."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokrace.tune import TuneResult
    from tokrace.tune_stage import StageResult

VERDICT_WORDS = {"baseline": "in use", "faster": "faster", "slower": "slower", "tie": "tie (within noise)"}


def stage_list(text: str) -> tuple[str, ...]:
    """``n_threads,kv_cache``: stages by name (``tokrace.tune_stage.STAGES``)."""
    from tokrace.tune_stage import STAGES

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in STAGES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected stages from {', '.join(STAGES)}, got {text!r}")
    return names


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tokrace.cli.common import positive_int

    p = subparsers.add_parser(
        "tune",
        help="measure the fastest threads, flash attention, batch, KV cache type (and draft k, p-min)",
        description="Measure, on this machine, which settings run MODEL fastest: each candidate is a short"
                    " llama-bench-style test, rounds interleaved; a difference within the rounds' spread is"
                    " a tie and keeps the setting in use. With --draft, also the draft length k and"
                    " p-min. --write saves the winners to settings.toml.",
    )
    p.add_argument("model", metavar="MODEL", help="a .gguf path or a catalog id")
    p.add_argument("--draft", default=None, metavar="D", help="also tune speculative decoding with draft D")
    p.add_argument("--rounds", "-r", type=positive_int, default=3, metavar="N",
                   help="interleaved rounds per stage (default: 3; 2 or more to tell winners from noise)")
    p.add_argument("-p", "--n-prompt", type=positive_int, default=128, metavar="N",
                   help="prompt size of the pp test (default: 128)")
    p.add_argument("-n", "--n-gen", type=positive_int, default=32, metavar="N",
                   help="tokens of the tg test (default: 32)")
    p.add_argument("-d", "--n-depth", type=int, default=256, metavar="N",
                   help="KV depth of the flash-attention and KV-cache tests (default: 256)")
    p.add_argument("--draft-gen", type=positive_int, default=64, metavar="N",
                   help="tokens of each drafted generation (default: 64)")
    p.add_argument("--only", type=stage_list, default=None, metavar="STAGES",
                   help="run only these stages, e.g. n_threads,kv_cache (default: all)")
    p.add_argument("--write", action="store_true", help="save the winners to settings.toml")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tokrace.backends.device_telemetry import detect_gpus
    from tokrace.backends.remote_endpoint import is_remote_ref
    from tokrace.load import DraftSpec, LoadSpec, ResolvedSpec, resolve
    from tokrace.model_registry.errors import TokraceError
    from tokrace.settings_file import load_settings, update_settings_file
    from tokrace.tune import tune_model
    from tokrace.tune_stage import STAGES, TuneOptions

    if is_remote_ref(args.model):
        raise TokraceError("tune measures a local model in process; a server is tuned on its own side",
                           kind="usage")
    if args.n_depth < 0:
        raise TokraceError("-d/--n-depth must be 0 or more", kind="usage")
    settings = load_settings()
    same_draft = args.draft is not None and args.draft == settings.draft
    draft = DraftSpec(ref=args.draft, k=settings.draft_k if same_draft else None,
                      p_min=settings.draft_p_min if same_draft else None)
    spec = LoadSpec.from_settings(settings)
    spec = LoadSpec(model=args.model, n_threads=spec.n_threads, request=spec.request, draft=draft,
                    flash_attn=spec.flash_attn, n_batch=spec.n_batch, n_ubatch=spec.n_ubatch,
                    type_k=spec.type_k, type_v=spec.type_v, repack=spec.repack)
    found = resolve(spec)
    assert isinstance(found, ResolvedSpec)
    options = TuneOptions(n_prompt=args.n_prompt, n_gen=args.n_gen, n_depth=args.n_depth, rounds=args.rounds,
                          draft_gen=args.draft_gen, stages=args.only or STAGES)

    def err(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.rounds < 2:
        err("tokrace: warning: with 1 round nothing can be told from noise: every candidate is a tie")
    result = tune_model(found, options, gpus=detect_gpus(),
                        progress=None if args.quiet else (lambda m: err(f"tune: {m}")))
    changes = result.changes()
    if changes and any(k.startswith("draft_") for k in changes):
        # Draft settings mean nothing without their draft and the target they were measured with.
        changes |= {"model": args.model, "draft": args.draft}
    if args.json:
        print(json.dumps(to_json(result, changes), indent=2))
    else:
        sys.stdout.write(render(result, args.rounds))
    if args.write and changes:
        update_settings_file(changes)
        from tokrace.settings_file import config_path

        err(f"wrote {', '.join(f'{k} = {v}' for k, v in changes.items())} to {config_path()}")
    elif changes:
        err("run again with --write to save these to settings.toml")
    else:
        err("the settings in use are as fast as any measured: nothing to change")
    return 0


def _stage_rows(stage: StageResult) -> list[str]:
    rows = [f"| {c.name}{' ✓' if c.name == stage.decision.winner else ''} | {c.median:.2f} |"
            f" {c.low:.2f}–{c.high:.2f} | {c.ratio:.3f} |"
            f" {'–' if c.verdict == 'baseline' else f'{c.ratio_low:.3f}–{c.ratio_high:.3f}'} |"
            f" {VERDICT_WORDS[c.verdict]} |" for c in stage.decision.candidates]
    return rows


def render(result: TuneResult, rounds: int) -> str:
    """Markdown: one table per stage (median and range of each candidate, the per-round ratio to the
    setting in use and its interval, the verdict), the winner marked ✓, then the chosen settings."""
    what = result.model + (f" with draft {result.draft}" if result.draft else "")
    lines = [f"tokrace tune {what}: {rounds} interleaved rounds per stage (tok/s: median, range)", ""]
    for stage in result.stages:
        lines += [f"### {stage.name}: {stage.metric}", "",
                  "| candidate | tok/s | range | × in use | rounds' ratios | verdict |",
                  "| --- | ---: | ---: | ---: | ---: | --- |", *_stage_rows(stage)]
        lines += [f"note: {n}" for n in stage.notes]
        lines.append("")
    chosen = " ".join(f"{k}={v}" for k, v in result.chosen.items())
    lines.append(f"fastest measured: {chosen}")
    return "\n".join(lines) + "\n"


def to_json(result: TuneResult, changes: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": result.model, "draft": result.draft, "baseline": result.baseline, "chosen": result.chosen,
        "changes": changes,
        "stages": [{
            "stage": s.name, "metric": s.metric, "baseline": s.decision.baseline, "winner": s.decision.winner,
            "notes": s.notes, "settings": s.settings,
            "candidates": [{"name": c.name, "samples_ts": list(c.samples), "median_ts": c.median,
                            "min_ts": c.low, "max_ts": c.high, "ratio": c.ratio, "ratio_low": c.ratio_low,
                            "ratio_high": c.ratio_high, "verdict": c.verdict}
                           for c in s.decision.candidates],
        } for s in result.stages],
    }
