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


def threads_int(text: str) -> int:
    """argparse ``type`` for ``--threads/-t``: 1 to this machine's CPU threads (``Settings.n_threads``)."""
    from tokrace.setting_values import thread_count

    try:
        return thread_count(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}, got {text!r}") from None


class SizesAction(argparse.Action):
    """``-p 16 -p 32`` and ``-p 16,32`` both test 16 and 32: each use adds to the list (the first
    replaces the default) instead of the last one silently winning."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        if current is self.default or current is None:
            current = []
        assert isinstance(values, list)
        setattr(namespace, self.dest, [*current, *(v for v in values if v not in current)])


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tokrace.backends.base import MAX_DRAFT_K
    from tokrace.cli.common import positive_int
    from tokrace.settings_args import add_settings_args, setting_type

    p = subparsers.add_parser(
        "bench",
        help="llama-bench-style prompt (pp) and generation (tg) tests",
        description="Run llama-bench's pp and tg tests through tokrace's backend; results are recorded "
                    "in the speed log and compared with your earlier runs of the same model and settings.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="a .gguf path or a catalog id")
    p.add_argument("-p", "--n-prompt", type=int_list, action=SizesAction, default=[512], metavar="N",
                   help="prompt sizes to test, repeatable or comma-separated (default: 512; 0 = no pp test)")
    p.add_argument("-n", "--n-gen", type=int_list, action=SizesAction, default=[128], metavar="N",
                   help="generation lengths to test, repeatable or comma-separated (default: 128;"
                        " 0 = no tg test)")
    p.add_argument("-d", "--n-depth", type=int_list, action=SizesAction, default=[0], metavar="N",
                   help="tokens already in the cache before each test, as llama-bench's -d, repeatable or"
                        " comma-separated (default: 0)")
    p.add_argument("-r", "--repetitions", type=positive_int, default=5, metavar="R",
                   help="runs of each test; results are mean ± sd (default: 5)")
    p.add_argument("--threads", "-t", type=threads_int, default=None, metavar="N",
                   help="CPU threads (default: one per physical core, as llama.cpp)")
    add_settings_args(p, ["flash_attn", "n_batch", "n_ubatch"])  # declared once, in Settings
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="a JSON array: one object per model and test")
    out.add_argument("--md", action="store_true", help="a Markdown table (the default)")
    p.add_argument("--draft", default=None, metavar="D",
                   help="also time greedy generation with and without this draft model (tgN-gen, tgN-draft)")
    p.add_argument("--draft-k", type=setting_type("draft_k"), default=None, metavar="K",
                   help=f"tokens drafted per verification step, 1 to {MAX_DRAFT_K} (default: 4)")
    p.add_argument("--concurrency", "-c", type=int_list, default=None, metavar="C",
                   help="a server URL only: requests in flight per level, e.g. 1,4,16 (default: 1)")
    p.add_argument("--requests", type=positive_int, default=None, metavar="N",
                   help="a server URL only: requests per concurrency level (default: 2 × C, at least 4)")
    p.add_argument("--time-limit", type=positive_int, default=300, metavar="S",
                   help="a server URL only: no request starts after S seconds (default: 300)")
    p.add_argument("--goodput", nargs="+", default=None, metavar="METRIC:MS",
                   help="a server URL only: SLOs for goodput (requests/s meeting all of them), as vLLM's"
                        " bench serve: ttft:MS tpot:MS e2el:MS, e.g. --goodput ttft:500 tpot:50")
    p.add_argument("--no-log", action="store_true", help="do not record the results")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tokrace.backends.device_telemetry import detect_gpus
    from tokrace.backends.remote_endpoint import is_remote_ref
    from tokrace.bench import bench_draft, bench_model
    from tokrace.cli.export_cmd import warnings_to
    from tokrace.cli.words import say
    from tokrace.load import DraftSpec, LoadSpec, ResolvedSpec, resolve
    from tokrace.model_registry.errors import TokraceError
    from tokrace.settings import Settings
    from tokrace.settings_args import settings_from_args
    from tokrace.speedlog import new_session_id
    from tokrace.speedlog.bench import markdown_table, regression_message
    from tokrace.speedlog.store import TolerantLog

    if any(is_remote_ref(ref) for ref in args.models):
        return run_serving(args)
    if args.concurrency or args.requests or args.goodput:
        raise TokraceError("--concurrency, --requests and --goodput measure a server: give its URL"
                           " (http://HOST:PORT/v1)", kind="usage")
    tests = [(p, 0, d) for d in args.n_depth for p in args.n_prompt if p]
    tests += [(0, n, d) for d in args.n_depth for n in args.n_gen if n]
    if args.draft_k and not args.draft:
        raise TokraceError("--draft-k needs --draft D", kind="usage")
    if args.draft and not any(args.n_gen):
        raise TokraceError("--draft times generation: give -n a size above 0", kind="usage")
    if not tests:
        raise TokraceError("no test to run: give -p or -n a size above 0", kind="usage")

    def err(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    progress = None if args.quiet else (lambda msg: err(f"bench: {msg}"))
    draft = DraftSpec(ref=args.draft, k=args.draft_k)
    # Every model and draft is found and checked (vocabulary too) before any test runs.
    engine = settings_from_args(args, Settings())  # the engine flags only: bench ignores settings.toml
    found = [resolve(LoadSpec(model=ref, n_threads=args.threads, draft=draft, flash_attn=engine.flash_attn,
                              n_batch=engine.n_batch, n_ubatch=engine.n_ubatch)) for ref in args.models]
    gpus = detect_gpus()
    # A log that cannot be read or written is a warning after the results, never instead of them.
    log = TolerantLog.open()
    try:
        with warnings_to(err):
            history = log.read(kind="bench")
    except TokraceError as failure:
        err(f"tokrace: warning: no comparison with earlier runs: {say(failure)}")
        history = []
    session_id = new_session_id()
    results = []
    try:
        for model in found:
            if not isinstance(model, ResolvedSpec):  # servers were sent to run_serving above
                continue
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
    if log.failure is not None:
        err(f"tokrace: warning: speed log not written: {say(log.failure)}")
    elif not args.no_log and results:
        err(f"recorded as session {session_id} in {log.path}")
    return 0


def run_serving(args: argparse.Namespace) -> int:
    """``tokrace bench URL --concurrency 1,4,16``: throughput and latency per concurrency level."""
    from tokrace.cli.words import say
    from tokrace.load import LoadSpec
    from tokrace.model_registry.errors import TokraceError
    from tokrace.serving_bench import bench_serving, markdown
    from tokrace.serving_metrics import parse_goodput
    from tokrace.session import open_session
    from tokrace.settings_file import load_settings
    from tokrace.speedlog import new_session_id
    from tokrace.speedlog.store import TolerantLog

    if len(args.models) != 1:
        raise TokraceError("bench one server at a time (its URL alone), or local models without a URL",
                           kind="usage")
    if args.draft:
        raise TokraceError("--draft is for local models; a server drafts on its own side", kind="usage")
    n_gen = max(args.n_gen)
    if n_gen < 1:
        raise TokraceError("a serving bench generates: give -n a size above 0", kind="usage")
    levels = args.concurrency or [1]
    if any(c < 1 or c > 128 for c in levels):
        raise TokraceError("--concurrency levels must be from 1 to 128", kind="usage")
    try:
        slo = parse_goodput(args.goodput or [])
    except ValueError as bad:
        raise TokraceError(str(bad), kind="usage") from None
    # A server's key and timeout come from settings.toml (the only settings a serving bench reads).
    file = load_settings()
    session = open_session(LoadSpec(model=args.models[0], api_key=file.api_key,
                                    request_timeout_s=file.request_timeout_s), [], record=False)

    def err(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log = TolerantLog.open()
    try:
        history = log.read(kind="bench")
    except TokraceError:
        history = []
    session_id = new_session_id()
    backend = session.backend
    from tokrace.backends.openai_backend import OpenAIBackend

    assert isinstance(backend, OpenAIBackend)
    try:
        results = bench_serving(backend, levels, n_gen, requests=args.requests, time_limit_s=args.time_limit,
                                session_id=session_id, log=None if args.no_log else log, history=history,
                                progress=None if args.quiet else (lambda m: err(f"bench: {m}")), slo=slo)
    finally:
        session.unload()
        log.close()
    if args.json:
        print(json.dumps([level.to_json() | {"engine": backend.engine, "endpoint": backend.endpoint.address,
                                             "model": backend.server_model, "n_gen": n_gen}
                          for level, _ in results], indent=2))
    else:
        where = f"{backend.server_model} on {backend.engine} at {backend.endpoint.address}"
        sys.stdout.write(markdown([level for level, _ in results], where))
    for level, _ in results:  # failures are said where they cannot be missed, not only in the log
        if level.first_error:
            err(f"tokrace: warning: concurrency {level.concurrency}: {level.failed + level.not_started} of"
                f" {level.requests} requests failed; first error: {say(level.first_error)}")
    if log.failure is not None:
        err(f"tokrace: warning: speed log not written: {say(log.failure)}")
    elif not args.no_log and results:
        err(f"recorded as session {session_id} in {log.path}")
    return 0
