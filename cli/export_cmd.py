"""``tokrace export``: the speed log as JSONL, CSV (llama-bench field names) or a Markdown table."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tokrace.model_registry.errors import TokraceError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export",
        help="export recorded replies (jsonl, csv, md) and plots",
        description="Export the speed log: every recorded chat reply, race lane and bench test.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--session", metavar="ID", help="one session (see 'tokrace export --list')")
    which.add_argument("--all", action="store_true", help="every session (the default)")
    which.add_argument("--last", action="store_true", help="the most recent session")
    p.add_argument("--format", "-f", choices=["jsonl", "csv", "md"], default="md")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
    p.add_argument("--plot", metavar="FILE.png|FILE.svg",
                   help="also write tok/s plots, one row per model; PNG or SVG by the file name")
    p.add_argument("--chart", action="store_true", help="also print tok/s charts in the terminal")
    p.add_argument("--list", action="store_true", help="list sessions instead of exporting")
    p.add_argument("--kind", choices=["chat", "race", "bench"], help="only this kind of record")
    p.set_defaults(func=run)


@contextmanager
def warnings_to(emit: Callable[[str], None]) -> Iterator[None]:
    """Report the log's read problems as ``tokrace: warning:`` lines instead of Python warnings."""
    from tokrace.speedlog import SpeedLogWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpeedLogWarning)
        yield
    for w in caught:
        if issubclass(w.category, SpeedLogWarning):
            emit(f"tokrace: warning: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from tokrace.speedlog import SpeedLog
    from tokrace.speedlog.export import render, write_atomic
    from tokrace.speedlog.plot import plot_format, render_plots, replies_chart, reply_chart
    from tokrace.speedlog.store import summarize_sessions

    plot_fmt = plot_format(args.plot) if args.plot else None  # a bad name fails before any work
    log = SpeedLog.open()
    with warnings_to(_stderr):
        records = log.read(kind=args.kind)
    sessions = summarize_sessions(records)
    if args.list:
        for s in sessions:
            rate = f"{s.mean_gen_tok_s:.1f} tok/s" if s.mean_gen_tok_s is not None else "– tok/s"
            print(f"{s.session_id}  {s.ended[:19]}  {'/'.join(s.kinds):<10} {s.replies:>4} replies  "
                  f"{rate:>12}  {', '.join(s.models)}")
        return 0
    if args.last:
        if not sessions:
            raise TokraceError(f"the speed log {log.path} has no sessions yet; chat or bench first",
                               kind="log")
        args.session = sessions[0].session_id
    if args.session:
        records = [r for r in records if r.session_id == args.session]
        if not records:
            raise TokraceError(
                f"no session {args.session!r} in {log.path}; list them with 'tokrace export --list'",
                kind="usage",
            )
    if not records:
        _stderr(f"tokrace: warning: nothing recorded yet in {log.path}")
    text = render(records, args.format)
    if args.output:
        path = write_atomic(args.output, text)
        _stderr(f"wrote {len(records)} record(s) to {path}")
    else:
        sys.stdout.write(text)
    if args.plot and plot_fmt:
        path = write_atomic(args.plot, render_plots(records, plot_fmt))
        _stderr(f"wrote plots to {path}")
    if args.chart:
        out = sys.stderr if not args.output else sys.stdout
        print(replies_chart(records), file=out)
        last = next((r for r in reversed(records) if r.token_times_s), None)
        if last is not None:
            print(reply_chart(last), file=out)
    return 0
