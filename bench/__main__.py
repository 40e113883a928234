"""Command line of the benchmarks: ``python -m bench [--out docs] [--quick]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .settings import FULL, QUICK, ROOT

log = logging.getLogger("bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure accuracy, early stop, read-noise robustness, cycles, FPGA "
                    "utilisation and Fmax, CPU and simulation speed, and an energy estimate; "
                    "write benchmarks.md, benchmarks.json and PNG figures.",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, default=ROOT / "docs",
                        help="folder for the page, the JSON and the figures (default: docs/)")
    output.add_argument("--work", type=Path, default=ROOT / "build" / "bench",
                        help="folder for models, builds and simulations (default: build/bench/)")
    run = parser.add_argument_group("run")
    run.add_argument("--quick", action="store_true",
                     help="tiny settings for tests: one epoch on 200 samples, two kept "
                          "fractions, no builds and no simulation")
    run.add_argument("--jobs", type=int, default=2,
                     help="worker processes for the sweeps and builds; 1 runs them in this "
                          "process (default: %(default)s)")
    run.add_argument("--reuse", action="store_true",
                     help="reuse the default model from an earlier run in --work when its "
                          "configuration and code are unchanged; the training time is then "
                          "that run's")
    run.add_argument("-v", "--verbose", action="store_true", help="log DEBUG messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.jobs < 1:
        print(f"error: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return 2
    from .run import run

    settings = QUICK if args.quick else FULL
    try:
        results = run(settings, args.out, args.work, argv=argv, jobs=args.jobs, reuse=args.reuse,
                      quick=args.quick)
    except (ValueError, OSError, RuntimeError) as error:
        log.debug("benchmark failed", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return 1
    log.info("benchmarks done in %.1f min: %s", results["seconds"]["total"] / 60,
             Path(args.out) / "benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
