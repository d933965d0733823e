"""``tokrace bench``: llama-bench-style pp/tg tests with repetitions, logged and compared with history."""

from __future__ import annotations

import argparse
import json
import sys


def int_list(text: str) -> list[int]:
    """``512`` or ``128,512``; 0 skips that kind of test (as llama-bench's ``-p 0``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 512 or 128,512, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers of 0 or more, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tokrace.cli.common import positive_int

    p = subparsers.add_parser(
        "bench",
        help="llama-bench-style prompt (pp) and generation (tg) tests",
        description="Run llama-bench's pp and tg tests through tokrace's backend; results are recorded "
                    "in the speed log and compared with your earlier runs of the same model and settings.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="a .gguf path or a catalog id")
    p.add_argument("-p", "--n-prompt", type=int_list, default=[512], metavar="N",
                   help="prompt sizes to test (default 512; 0 = no pp test)")
    p.add_argument("-n", "--n-gen", type=int_list, default=[128], metavar="N",
                   help="generation lengths to test (default 128; 0 = no tg test)")
    p.add_argument("-r", "--repetitions", type=positive_int, default=5, metavar="R")
    p.add_argument("--threads", "-t", type=positive_int, default=None,
                   help="CPU threads (default: all cores)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="a JSON array: one object per model and test")
    out.add_argument("--md", action="store_true", help="a Markdown table (the default)")
    p.add_argument("--draft", default=None, metavar="D",
                   help="also time greedy generation with and without this draft model (tgN-gen, tgN-draft)")
    p.add_argument("--draft-k", type=positive_int, default=None, metavar="K",
                   help="tokens drafted per verification step (default: 4)")
    p.add_argument("--no-log", action="store_true", help="do not record the results")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tokrace.backends.device_telemetry import detect_gpus
    from tokrace.bench import bench_draft, bench_model
    from tokrace.cli.export_cmd import warnings_to
    from tokrace.model_registry.errors import TokraceError
    from tokrace.session import DraftSpec, LoadSpec, resolve
    from tokrace.speedlog import SpeedLog, new_session_id
    from tokrace.speedlog.bench import markdown_table, regression_message

    tests = [(p, 0) for p in args.n_prompt if p] + [(0, n) for n in args.n_gen if n]
    if args.draft_k and not args.draft:
        raise TokraceError("--draft-k needs --draft D")
    if args.draft and not any(args.n_gen):
        raise TokraceError("--draft times generation: give -n a size above 0")
    if not tests:
        raise TokraceError("no test to run: give -p or -n a size above 0")

    def err(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    progress = None if args.quiet else (lambda msg: err(f"bench: {msg}"))
    draft = DraftSpec(ref=args.draft, k=args.draft_k)
    # Every model and draft is found and checked (vocabulary too) before any test runs.
    found = [resolve(LoadSpec(model=ref, n_threads=args.threads, draft=draft)) for ref in args.models]
    gpus = detect_gpus()
    log = SpeedLog.open()
    with warnings_to(err):
        history = log.read(kind="bench")
    session_id = new_session_id()
    results = []
    try:
        for model in found:
            results += bench_model(model, tests, args.repetitions, gpus=gpus, session_id=session_id,
                                   log=None if args.no_log else log, history=history, progress=progress)
            if args.draft:
                results += bench_draft(model, [n for n in args.n_gen if n], args.repetitions, gpus=gpus,
                                       session_id=session_id, log=None if args.no_log else log,
                                       history=history, progress=progress)
    finally:
        log.close()
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        sys.stdout.write(markdown_table(results))
    for result in results:
        message = regression_message(result)
        if message:
            err(f"tokrace: warning: {message}")
    if not args.no_log and results:
        err(f"recorded as session {session_id} in {log.path}")
    return 0
