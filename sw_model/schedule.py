"""Cycle constants of the accelerator schedule (section "Accelerator schedule and cycle count").

The golden model computes cycle counts from these numbers and the RTL is built to take exactly
these many cycles; the cocotb regression checks one against the other.
"""

from __future__ import annotations

from .spec import ArchParams

START_CYCLES = 1
ENCODE_CYCLES = 1
# The RTL registers block RAM outputs before the LIF arithmetic (its stage B) so that 100 MHz on
# ECP5 leaves the block RAM clock-to-output delay out of the adder chain; the last update of a
# layer therefore writes its spikes two cycles after it is issued.
DRAIN_CYCLES_ROM = 2
# Registers in the on-the-fly weight pipeline between the synapse coordinates and the lanes.
HASH_STAGES = 3


def hash_stages(arch: ArchParams) -> int:
    """Return the pipeline registers added by the weight source (0 for the ROM)."""
    return HASH_STAGES if arch.weight_source == "hash" else 0


def drain_cycles(arch: ArchParams) -> int:
    """Return the cycles between the last update of a layer and the next phase."""
    return DRAIN_CYCLES_ROM + hash_stages(arch)


def decide_cycles(arch: ArchParams, rule: str) -> int:
    """Return the cycles of a checked early-stop decision for a rule."""
    if rule == "confidence":
        return 2 * arch.n_out + 3
    return arch.n_out + 1


def clear_cycles(arch: ArchParams) -> int:
    """Return the cycles of the accumulator clearing pass after reset or abort."""
    return sum(arch.groups(k) for k in range(arch.n_layers))
