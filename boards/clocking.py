"""PLL settings and the clock and reset domain of the board top level.

The PLL limits are those of the vendor data sheets, as the open tools use them:
iCE40 sysCLOCK PLL (Lattice TN1251): PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz;
ECP5 sysCLOCK PLL (Lattice TN1263): PFD 3.125..400 MHz, VCO 400..800 MHz, output 3.125..400 MHz.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import *

__all__ = ["PLLSettings", "ice40_pll", "ecp5_pll", "ClockReset"]


@dataclass(frozen=True)
class PLLSettings:
    """Divider settings of one PLL and the output frequency they give."""

    family: str
    input_hz: float
    output_hz: float
    dividers: dict


def _check_target(target_hz: float, low: float, high: float, family: str) -> None:
    if not low <= target_hz <= high:
        raise ValueError(f"{family} PLL output must lie in {low / 1e6:g}..{high / 1e6:g} MHz, "
                         f"not {target_hz / 1e6:g} MHz")


def ice40_pll(input_hz: float, target_hz: float) -> PLLSettings:
    """Return the SB_PLL40 settings (SIMPLE feedback) closest to ``target_hz``.

    Output = input / (DIVR + 1) * (DIVF + 1) / 2**DIVQ. Among equally close settings the one with
    the lowest VCO frequency is taken.
    """
    _check_target(target_hz, 16e6, 275e6, "iCE40")
    best = None
    for divr in range(16):
        pfd = input_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                key = (abs(out - target_hz), vco)
                if best is None or key < best[0]:
                    best = (key, divr, divf, divq, pfd, out)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting reaches {target_hz / 1e6:g} MHz "
                         f"from {input_hz / 1e6:g} MHz")
    _, divr, divf, divq, pfd, out = best
    # Loop filter range by PFD frequency, from the iCE40 PLL configuration tables.
    bounds = (17e6, 26e6, 44e6, 66e6, 101e6)
    filter_range = 1 + sum(pfd >= bound for bound in bounds)
    return PLLSettings("ice40", input_hz, out, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                                "FILTER_RANGE": filter_range})


def ecp5_pll(input_hz: float, target_hz: float) -> PLLSettings:
    """Return the EHXPLLL settings (feedback from CLKOP) closest to ``target_hz``.

    Output = input * CLKFB_DIV / CLKI_DIV; the VCO runs at output * CLKOP_DIV.
    """
    _check_target(target_hz, 3.125e6, 400e6, "ECP5")
    best = None
    for clki_div in range(1, 129):
        pfd = input_hz / clki_div
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            if not 3.125e6 <= out <= 400e6:
                continue
            for clkop_div in range(1, 129):
                vco = out * clkop_div
                if 400e6 <= vco <= 800e6:
                    key = (abs(out - target_hz), -vco)
                    if best is None or key < best[0]:
                        best = (key, clki_div, clkfb_div, clkop_div, out)
                    break
    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches {target_hz / 1e6:g} MHz "
                         f"from {input_hz / 1e6:g} MHz")
    _, clki_div, clkfb_div, clkop_div, out = best
    return PLLSettings("ecp5", input_hz, out, {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div,
                                               "CLKOP_DIV": clkop_div})


class ClockReset(Elaboratable):
    """Drive the ``sync`` domain from a board oscillator, through a PLL unless none is needed.

    The parent defines the domains ``sync`` and ``por`` (reset-less); this module drives their
    clocks and the reset of ``sync``.

    ``sync`` is held in reset until the PLL has locked and then for ``2**reset_bits`` more
    cycles. iCE40 block RAM reads return zeros for about 3 us after configuration, and the
    default 12 bits cover that at any clock rate up to 1.3 GHz.

    Parameters
    ----------
    clock_pin : the raw oscillator pin (``platform.request(name, dir="-")``).
    pll : PLLSettings or None
        None feeds the oscillator straight to ``sync``.
    """

    def __init__(self, clock_pin, pll: PLLSettings | None, *, family: str, reset_bits: int = 12):
        self.clock_pin = clock_pin
        self.pll = pll
        self.family = family
        self.reset_bits = reset_bits

    def elaborate(self, platform):
        m = Module()
        # The PLL or the oscillator buffer drives this signal, which carries the clock constraint
        # for nextpnr. Yosys drops most of the names of a net that has several, and it dropped
        # this one without "keep", so nextpnr ignored the constraint as naming no net.
        sync_clock = Signal(attrs={"keep": 1})
        m.d.comb += ClockSignal("sync").eq(sync_clock)
        locked = Signal()

        if self.pll is None:
            from amaranth.lib import io
            m.submodules.clock_buffer = buffer = io.Buffer("i", self.clock_pin)
            m.d.comb += [sync_clock.eq(buffer.i), locked.eq(1)]
        elif self.family == "ice40":
            d = self.pll.dividers
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=d["DIVR"], p_DIVF=d["DIVF"], p_DIVQ=d["DIVQ"],
                p_FILTER_RANGE=d["FILTER_RANGE"],
                io_PACKAGEPIN=self.clock_pin.io,
                i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=sync_clock,
                o_LOCK=locked,
            )
        elif self.family == "ecp5":
            from amaranth.lib import io
            m.submodules.clock_buffer = buffer = io.Buffer("i", self.clock_pin)
            d = self.pll.dividers
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{self.pll.input_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self.pll.output_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
                a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=d["CLKOP_DIV"],
                p_CLKOP_CPHASE=d["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
                p_CLKI_DIV=d["CLKI_DIV"], p_CLKFB_DIV=d["CLKFB_DIV"], p_FEEDBK_PATH="CLKOP",
                i_CLKI=buffer.i, i_CLKFB=sync_clock,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
                i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=sync_clock, o_LOCK=locked,
            )
        else:
            raise ValueError(f"no PLL for FPGA family {self.family!r}")

        # Power-on reset: count on the PLL output while it is locked; restart on loss of lock.
        m.d.comb += ClockSignal("por").eq(sync_clock)
        counter = Signal(self.reset_bits + 1)
        with m.If(~locked):
            m.d.por += counter.eq(0)
        with m.Elif(~counter[-1]):
            m.d.por += counter.eq(counter + 1)
        m.d.comb += ResetSignal("sync").eq(~counter[-1])

        if platform is not None:
            frequency = self._sync_frequency(platform)
            if frequency is not None:
                platform.add_clock_constraint(sync_clock, frequency)
        return m

    def _sync_frequency(self, platform) -> float | None:
        """Return the ``sync`` clock frequency in Hz: the PLL output, or without a PLL the
        frequency the platform gives the oscillator pin (None if it gives none)."""
        if self.pll is not None:
            return self.pll.output_hz
        pin_frequencies = dict(platform.iter_port_clock_constraints())
        return pin_frequencies.get(getattr(self.clock_pin, "io", None))
