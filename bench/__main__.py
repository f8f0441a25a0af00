"""``python -m bench run|report|compare``: what `make bench` and `make bench-compare` run.

run [--mode full|quick|tiny]  measure, then write reports/bench-<timestamp>/{results.json,index.html}
    [--only ID ...]           only those experiments (and what they need): `list` names them
report DIR                    rebuild DIR/index.html from DIR/results.json
compare A B                   print B's figures as ratios of A's (report folders or results.json)
list                          the registered experiments, in the order a run runs them
schema                        the JSON schema of results.json (bench/results.schema.json)
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from .modes import MODES
from .procs import ROOT, LabError


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from . import registry
    from .compare import write
    from .lab import Lab
    from .load import wrk_binary
    from .report import write_report

    mode = MODES[args.mode]
    # Ctrl-C stops every server and generator the lab started (Lab.run), also when the lab was
    # started in the background, where the shell has SIGINT ignored and Python would keep it so;
    # SIGTERM (kill, a CI runner's timeout) the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    wrk_binary()  # fail before starting anything when the generator is missing
    try:  # and when --only names an experiment there is not
        registry.select(registry.load(), args.only)
    except registry.RegistryError as exc:
        raise LabError(str(exc)) from None
    out = args.out or (ROOT / "reports" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    what = f"only {', '.join(args.only)}" if args.only else "every claim"
    print(f"twinstack lab, {mode.name} mode: {what}, measured. Report: {out}/index.html", flush=True)
    lab = Lab(mode, out, say=lambda line: print(line, flush=True), only=args.only)
    results = lab.run()
    raw = write(results, out)
    page = write_report(results, out)
    print()
    print(f"{'claim':<6}{'verdict':<15}reason")
    for e in results.experiments:
        print(f"{e.claim:<6}{e.verdict:<15}{e.reason}")
    print(f"\nDone in {results.elapsed_s:.0f} s. Report: {page}\nRaw figures: {raw}")
    if results.failures:
        count = len(results.failures)
        print(f"\n{count} part(s) of the lab could not run (inconclusive in the report):", file=sys.stderr)
        for failure in results.failures:
            print(f"  {failure}", file=sys.stderr)
        print(f"Tracebacks: {out / 'logs' / 'lab-errors.log'}", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from .compare import load
    from .report import write_report

    folder = args.folder if args.folder.is_dir() else args.folder.parent
    print(write_report(load(args.folder), folder))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare, load

    print(compare(load(args.a), load(args.b)))
    return 0


def _list(args: argparse.Namespace) -> int:
    from . import registry

    for experiment in registry.load():
        deps = ", ".join((*experiment.needs, *experiment.after))
        print(f"{experiment.id:<12} {experiment.title}{f' (after {deps})' if deps else ''}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from .records import schema_json

    print(schema_json(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="The twinstack lab.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run every experiment and write the report.")
    run.add_argument("--mode", choices=sorted(MODES), default="full")
    run.add_argument("--out", type=Path, help="Report folder (default: reports/bench-<timestamp>).")
    run.add_argument(
        "--only", nargs="+", default=[], metavar="ID",
        help="Run only these experiments (ids from `list`) and those whose results they take.",
    )  # fmt: skip
    run.set_defaults(func=_run)
    report = sub.add_parser("report", help="Rebuild index.html from a folder's results.json.")
    report.add_argument("folder", type=Path)
    report.set_defaults(func=_report)
    cmp_ = sub.add_parser("compare", help="Ratios between two runs (B / A).")
    cmp_.add_argument("a", type=Path)
    cmp_.add_argument("b", type=Path)
    cmp_.set_defaults(func=_compare)
    sub.add_parser("list", help="The registered experiments, in run order.").set_defaults(func=_list)
    sub.add_parser("schema", help="The JSON schema of results.json.").set_defaults(func=_schema)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the lab has stopped every server it started
        print("interrupted: no report written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
