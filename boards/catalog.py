"""The boards the project builds for: platform, clock, UART, LEDs and programming cable."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BoardInfo", "KNOWN_BOARDS", "get_board"]


@dataclass(frozen=True)
class BoardInfo:
    """Everything the build and the programmer need to know about one board.

    Attributes
    ----------
    name: the name used in configurations, for example ``"ulx3s-85f"``.
    description: board and FPGA in words.
    platform_module, platform_class: the amaranth-boards platform.
    family: ``"ice40"`` or ``"ecp5"``; selects the PLL and the resource names of the report.
    device: the FPGA part, as amaranth-boards names it.
    clock_resource: the oscillator resource; ``oscillator_mhz`` its frequency.
    default_clock_mhz: the clock the design runs at when the configuration gives none.
    busy_led, error_led: (resource, number, subsignal or None) of the status LEDs.
    class_leds: LEDs that show the last class in binary, least significant bit first.
    extra_resources: names of platform attributes holding resources to add (an attached PMOD).
    loader_args: openFPGALoader arguments that select the board's cable.
    loader_target: ``"sram"`` when openFPGALoader loads the FPGA directly, ``"flash"`` when it can
        only write the configuration flash (iCE40 boards).
    """

    name: str
    description: str
    platform_module: str
    platform_class: str
    family: str
    device: str
    clock_resource: str
    oscillator_mhz: float
    default_clock_mhz: float
    busy_led: tuple
    error_led: tuple
    class_leds: tuple
    loader_args: tuple
    loader_target: str
    extra_resources: tuple = field(default=())

    def platform(self):
        """Return a new amaranth-boards platform object for this board."""
        import importlib
        module = importlib.import_module(self.platform_module)
        platform = getattr(module, self.platform_class)()
        for attribute in self.extra_resources:
            platform.add_resources(getattr(platform, attribute))
        return platform


def _icebreaker() -> BoardInfo:
    return BoardInfo(
        name="icebreaker",
        description="1BitSquared iCEBreaker, Lattice iCE40UP5K-SG48",
        platform_module="amaranth_boards.icebreaker",
        platform_class="ICEBreakerPlatform",
        family="ice40",
        device="iCE40UP5K",
        clock_resource="clk12",
        oscillator_mhz=12.0,
        default_clock_mhz=24.0,
        busy_led=("led_g", 0, None),
        error_led=("led_r", 0, None),
        # The five LEDs of the snap-off PMOD that ships attached to the board.
        class_leds=tuple(("led", n, None) for n in range(2, 7)),
        extra_resources=("break_off_pmod",),
        loader_args=("-b", "ice40_generic"),
        loader_target="flash",
    )


def _ulx3s(size: str) -> BoardInfo:
    return BoardInfo(
        name=f"ulx3s-{size}",
        description=f"Radiona ULX3S, Lattice ECP5 LFE5U-{size.upper()} (CABGA381)",
        platform_module="amaranth_boards.ulx3s",
        platform_class=f"ULX3S_{size.upper()}_Platform",
        family="ecp5",
        device=f"LFE5U-{size.upper()}",
        clock_resource="clk25",
        oscillator_mhz=25.0,
        default_clock_mhz=50.0,
        busy_led=("led", 0, None),
        error_led=("led", 1, None),
        class_leds=tuple(("led", n, None) for n in range(2, 8)),
        loader_args=("-b", "ulx3s"),
        loader_target="sram",
    )


def _ecpix5(size: str) -> BoardInfo:
    return BoardInfo(
        name=f"ecpix5-{size}",
        description=f"LambdaConcept ECPIX-5, Lattice ECP5-5G LFE5UM5G-{size.upper()} (CABGA554)",
        platform_module="amaranth_boards.ecpix5",
        platform_class=f"ECPIX5{size[:2]}Platform",
        family="ecp5",
        device=f"LFE5UM5G-{size.upper()}",
        clock_resource="clk100",
        oscillator_mhz=100.0,
        default_clock_mhz=50.0,
        busy_led=("rgb_led", 0, "g"),
        error_led=("rgb_led", 0, "r"),
        class_leds=tuple(("rgb_led", n, color) for n in (1, 2, 3) for color in ("r", "g", "b")),
        loader_args=("-b", "ecpix5"),
        loader_target="sram",
    )


_BOARDS = [_icebreaker()]
_BOARDS += [_ulx3s(size) for size in ("12f", "25f", "45f", "85f")]
_BOARDS += [_ecpix5(size) for size in ("45f", "85f")]

KNOWN_BOARDS: dict[str, BoardInfo] = {board.name: board for board in _BOARDS}


def get_board(name: str) -> BoardInfo:
    """Return the board called ``name``; raise ValueError listing the known boards otherwise."""
    try:
        return KNOWN_BOARDS[name]
    except (KeyError, TypeError):
        known = ", ".join(KNOWN_BOARDS)
        raise ValueError(f"unknown board {name!r}; known boards: {known}") from None
