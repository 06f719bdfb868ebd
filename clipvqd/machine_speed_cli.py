"""`python -m clipvqd calibrate`: time the machine-speed workload (clipvqd/machine_speed.py), print one line, and
with --out write the record (rule calibrate_machine; `make run` prints it before the workflow starts)."""

from __future__ import annotations

import argparse

from clipvqd.cli_args import positive_int, write_json
from clipvqd.machine_speed import DEFAULT_REPEATS


def cmd_calibrate(args) -> None:
    from clipvqd.machine_speed import calibrate, summary_line

    record = calibrate(args.repeats)
    if args.out:
        write_json(args.out, record)
    print(summary_line(record), flush=True)


def register(group: argparse.ArgumentParser) -> None:
    group.set_defaults(handler=cmd_calibrate)
    group.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS,
                       help="timed repeats of the workload after one warm-up; the median is reported")
    group.add_argument("--out", default=None, help="write the whole record here (JSON)")
