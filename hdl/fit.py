"""Place and route the bare core on a board to measure its utilisation and Fmax.

The board top level with the UART link lives in boards/; this utility wraps only the core, so
its numbers are those of the core plus about 125 flip-flops of wrapper. The wrapper shifts every
core input in from one pin and XOR-reduces the registered core outputs to another, which keeps
synthesis from removing any logic. Example::

    source tools/env.sh
    python -m hdl.fit --board icebreaker --freq 24 --out build/fit
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.build import Clock
from amaranth.hdl import Cat, ClockDomain, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib.wiring import Out

from sw_model.model import Model, load_model
from sw_model.spec import ArchParams, EarlyStopParams

from .core import Accelerator
from .synthesis import build_overrides

__all__ = ["FitWrapper", "default_model", "run_fit", "BOARDS"]

logger = logging.getLogger(__name__)

# Board name: platform class path.
BOARDS = {
    "icebreaker": "amaranth_boards.icebreaker.ICEBreakerPlatform",
    "ulx3s-85f": "amaranth_boards.ulx3s.ULX3S_85F_Platform",
}


class FitWrapper(Elaboratable):
    """Thin board top: one clock at the requested frequency, inputs shifted in from the UART RX
    pin, registered outputs XOR-reduced to the UART TX pin."""

    def __init__(self, core: Accelerator, frequency: float):
        self.core = core
        self.frequency = frequency

    def elaborate(self, platform):
        m = Module()
        core = self.core
        m.submodules.core = core

        # The board's clock resource carries its oscillator frequency, which becomes the timing
        # target of nextpnr. Raise it to the frequency under test before requesting the pin.
        platform.lookup(platform.default_clk).clock = Clock(self.frequency)
        clk = platform.request(platform.default_clk, dir="i")
        m.domains.sync = domain = ClockDomain("sync")
        m.d.comb += domain.clk.eq(clk.i)

        uart = platform.request("uart", 0)
        inputs = [core.in_valid, core.in_data, core.out_ready, core.reg_addr, core.reg_wdata,
                  core.reg_we, core.reg_re]
        width = sum(len(port) for port in inputs) + 1
        chain = Signal(width)
        m.d.sync += chain.eq(Cat(uart.rx.i, chain[:-1]))
        m.d.comb += Cat(*inputs, ResetSignal("sync")).eq(chain)

        outputs = Cat(*[getattr(core, name) for name, member in core.signature.members.items()
                        if member.flow == Out])
        captured = Signal(len(outputs))
        folded = Signal()
        m.d.sync += [captured.eq(outputs), folded.eq(captured.xor())]
        m.d.comb += uart.tx.o.eq(folded)
        return m


def default_model(arch: ArchParams | None = None, *, seed: int = 0) -> Model:
    """Return the default digits configuration with half of the synapses kept at random."""
    arch = ArchParams() if arch is None else arch
    rng = np.random.default_rng(seed)
    masks = [(rng.random((arch.sizes[k], arch.sizes[k + 1])) < 0.5).astype(np.uint8)
             for k in range(arch.n_layers)]
    thresholds = [arch.membrane_max // 8] * arch.spiking_layers
    return Model(arch=arch, masks=masks, thresholds=thresholds,
                 early_stop=EarlyStopParams(rule="margin", budget=arch.timesteps, margin=4))


def _platform(board: str):
    module_name, class_name = BOARDS[board].rsplit(".", 1)
    module = __import__(module_name, fromlist=[class_name])
    return getattr(module, class_name)()


def parse_report(log: str) -> dict:
    """Return utilisation and Fmax from a nextpnr log: ``{"fmax_mhz": .., "cells": {...}}``."""
    cells = {}
    for name, used, available in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log):
        cells[name] = (int(used), int(available))
    fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", log)
    return {"fmax_mhz": float(fmax[-1]) if fmax else None, "cells": cells}


def run_fit(model: Model, board: str, frequency_mhz: float, out: Path) -> dict:
    """Build the wrapped core for ``board`` and return :func:`parse_report` of the nextpnr log."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; choose one of {sorted(BOARDS)}")
    platform = _platform(board)
    top = FitWrapper(Accelerator(model), frequency_mhz * 1e6)
    build_dir = Path(out) / board
    started = time.monotonic()
    logger.info("building for %s at %.1f MHz in %s", board, frequency_mhz, build_dir)
    platform.build(top, name="fit", build_dir=str(build_dir), do_program=False,
                   nextpnr_opts="--timing-allow-fail --report fit_report.json",
                   **build_overrides(platform))
    logger.info("build took %.0f s", time.monotonic() - started)
    return parse_report((build_dir / "fit.tim").read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdl.fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", choices=sorted(BOARDS), default="icebreaker",
                        help="board to place and route for (default: %(default)s)")
    parser.add_argument("--freq", type=float, default=24.0,
                        help="clock frequency to constrain, in MHz (default: %(default)s)")
    parser.add_argument("--model", type=Path,
                        help="model.npz to build (default: the digits configuration with "
                             "random masks)")
    parser.add_argument("--out", type=Path, default=Path("build/fit"),
                        help="build folder (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = load_model(args.model) if args.model else default_model()
    report = run_fit(model, args.board, args.freq, args.out)
    for name, (used, available) in sorted(report["cells"].items()):
        if used:
            print(f"{name:>16}: {used:6d} / {available:6d} ({100 * used / available:5.1f} %)")
    print(f"{'Fmax':>16}: {report['fmax_mhz']} MHz (target {args.freq} MHz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
