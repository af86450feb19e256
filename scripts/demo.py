#!/usr/bin/env python3
"""`make demo`: the walkthroughs on the embedded default (emulator, lab databases)."""

from __future__ import annotations

import argparse
import sys

DEMOS = ("emulator", "postgres", "mariadb", "replication")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("demos", nargs="*", default=list(DEMOS), help=f"which demos to run (default: all of {DEMOS})")
    parser.add_argument("--keep", action="store_true", help="leave the lab database and clone running")
    args = parser.parse_args([a for a in sys.argv[1:] if a.strip()])
    for name in args.demos:
        if name not in DEMOS:
            parser.error(f"unknown demo {name!r}: expected one of {', '.join(DEMOS)}")
    if "emulator" in args.demos:
        from copydata.demo import emulator_walkthrough
        emulator_walkthrough.run()
    if "postgres" in args.demos:
        from copydata.demo import postgres_walkthrough
        postgres_walkthrough.run(keep=args.keep)
    if "mariadb" in args.demos:
        from copydata.demo import mariadb_walkthrough
        mariadb_walkthrough.run(keep=args.keep)
    if "replication" in args.demos:
        from copydata.demo import replication_walkthrough
        replication_walkthrough.run(keep=args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
