"""Command line of the generator: ``python -m gen --config FILE [--out DIR]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import SCHEMA, ConfigError, describe_key, load_config
from .pipeline import STAGES, PipelineError

log = logging.getLogger("gen")


def _config_help() -> str:
    lines = ["configuration keys (TOML sections and keys, with defaults):"]
    for section, keys in SCHEMA.items():
        lines.append(f"  [{section}]" if section else "  top level")
        for name, key in keys.items():
            # A None default defers to sw_model.train.TrainConfig; importing it would load torch.
            default = "the TrainConfig default" if key.default is None else repr(key.default)
            allowed = f" ({describe_key(key)})" if key.choices else ""
            lines.append(f"    {name} = {default}: {key.help}{allowed}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gen",
        description="Train a PRIME topology over fixed random weights, export it, generate the "
                    "accelerator's Verilog, verify it against the golden model under cocotb, and "
                    "build a bitstream for the configured board.",
        epilog=_config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup = parser.add_argument_group("setup")
    setup.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    setup.add_argument("--out", type=Path, default=None,
                       help="output folder (default: build/<config name>/)")
    run = parser.add_argument_group("run")
    run.add_argument("--until", choices=STAGES, default="report",
                     help="stop after this stage (default: %(default)s, the whole job)")
    run.add_argument("--force", action="store_true",
                     help="recompute every stage instead of reusing cached results")
    run.add_argument("--program", action="store_true",
                     help="flash the bitstream with openFPGALoader after the build")
    run.add_argument("-v", "--verbose", action="store_true", help="log DEBUG messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.program and STAGES.index(args.until) < STAGES.index("build"):
        print(f"error: --program needs the build stage, but --until is {args.until!r}", file=sys.stderr)
        return 2
    out = args.out or Path("build") / config.name

    from .pipeline import Pipeline
    try:
        report = Pipeline(config, out, until=args.until, force=args.force).run()
        if args.program:
            from boards import ProgramError, program
            try:
                program(report["files"]["bitstream"], config["board"]["name"])
            except ProgramError as error:
                print(f"error: programming failed: {error}", file=sys.stderr)
                return 1
    except (PipelineError, ValueError, OSError) as error:
        log.debug("stage failed", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
