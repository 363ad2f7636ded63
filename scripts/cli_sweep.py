"""Sweep the command line with hostile values, as a tired user or an attacker would, and count the outcomes.

For every subcommand and every option that takes a value, each bad value below is passed (the other
arguments valid: a real bundle and checkpoint from `pixelrt demo`), and the outcome is classified by exit
code: 0 ok, 1 a miss, 2 a user error with one message, 3 an internal error (a bug), or "timeout" (the
value was valid and real work started; stopped after --seconds). Any traceback in the output counts as a
failure whatever the code. Prints a table and exits 1 if anything crashed.

    .venv/bin/python scripts/cli_sweep.py demo_out          # after `make demo`
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

BAD = ["-1", "0", "-3", "abc", "nan", "inf", "1e999", "99999999999999999999", "", "/dev/null", "/",
       "/etc/passwd/x", "0-99999999", "1,,2", "../../etc", "\x00", "-", "1.5"]


class Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise Timeout()


def cases(parser: argparse.ArgumentParser, demo: Path, tmp: Path):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        positionals = []
        for a in p._actions:
            if a.option_strings or isinstance(a, argparse._HelpAction):
                continue
            positionals.append(str(demo / ("checkpoint" if a.dest == "checkpoint" else "bundle"))
                               if a.dest in ("checkpoint", "bundle") else str(tmp / "repo"))
        required = []
        for a in p._actions:
            if a.required and a.option_strings:
                value = a.choices[0] if a.choices else str(tmp / f"out-{name}")
                required += [a.option_strings[0], str(value)]
        for a in p._actions:
            if not a.option_strings or a.nargs == 0 or isinstance(a, argparse._HelpAction):
                continue
            for v in BAD:
                rest = [x for i, x in enumerate(required) if not (required[i - 1:i] == [a.option_strings[0]]
                                                                  or x == a.option_strings[0])]
                values = [v] * (a.nargs if isinstance(a.nargs, int) else 1)
                yield name, a.option_strings[0], v, [name, *positionals, *rest, a.option_strings[0], *values]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="folder written by `pixelrt demo` (checkpoint/ and bundle/)")
    ap.add_argument("--seconds", type=int, default=20, help="time allowed per case before it counts as work")
    ap.add_argument("--skip", default="bench,demo,serve,convert,import-pclucas,build-engine",
                    help="commands not swept (long benchmarks, servers)")
    opts = ap.parse_args()
    from pixelrt.cli import build_parser, main as cli

    skip = set(opts.skip.split(","))
    source = opts.demo.resolve()
    outcomes, crashes = Counter(), []
    import os

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        os.chdir(tmp)  # a relative output path such as `-o -1` is a valid folder name: keep those out of the repo
        demo = tmp / "demo"
        shutil.copytree(source / "checkpoint", demo / "checkpoint")
        shutil.copytree(source / "bundle", demo / "bundle")
        signal.signal(signal.SIGALRM, _alarm)
        for name, option, value, argv in cases(build_parser(), demo, tmp):
            if name in skip:
                continue
            out, err = io.StringIO(), io.StringIO()
            signal.alarm(opts.seconds)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = cli(argv)
            except Timeout:
                code = "timeout"
            except BaseException as e:  # noqa: BLE001 - what escaped main() is a crash
                code = f"escaped {type(e).__name__}"
            finally:
                signal.alarm(0)
            text = out.getvalue() + err.getvalue()
            crashed = "Traceback" in text or code == 3 or str(code).startswith("escaped")
            outcomes[(name, "crash" if crashed else str(code))] += 1
            if crashed:
                crashes.append((argv, code, text.strip().splitlines()[-1:] if text.strip() else []))
    total = sum(outcomes.values())
    print(f"{total} cases")
    for (name, outcome), n in sorted(outcomes.items()):
        print(f"  {name:14s} {outcome:8s} {n}")
    for argv, code, last in crashes:
        print(f"CRASH {code}: pixelrt {' '.join(map(repr, argv))}\n    {last}")
    print(f"crashes: {len(crashes)}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
