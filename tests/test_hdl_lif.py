# amaranth: UnusedElaboratable=no
"""LIF update and output accumulators in the Amaranth simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.lif import LifUpdate, OutputAccumulator
from sw_model.spec import ArchParams, leak, saturate


def evaluate(dut, cases, *, threshold, first_step=0):
    """Apply each case (leaked, synapses) for one cycle and return (membrane_next,
    leaked_next, spikes) per case: the first and last from the cycle after it, leaked_next
    from the cycle after that."""
    lanes = len(dut.spikes)
    results = []

    async def testbench(ctx):
        ctx.set(dut.threshold, threshold)
        ctx.set(dut.first_step, first_step)
        for leaked, synapses in cases:
            for lane in range(lanes):
                ctx.set(dut.leaked[lane], int(leaked[lane]))
                ctx.set(dut.synapse[lane], int(synapses[lane]))
            await ctx.tick()
            after = [ctx.get(dut.membrane_next[lane]) for lane in range(lanes)]
            spikes = [(ctx.get(dut.spikes) >> lane) & 1 for lane in range(lanes)]
            await ctx.tick()
            stored = [ctx.get(dut.leaked_next[lane]) for lane in range(lanes)]
            results.append((after, stored, spikes))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return results


def test_lif_hand_worked_subtract():
    # V = 8 bits (-128..127), L = 2, theta = 10; inputs are leaked potentials a.
    dut = LifUpdate(lanes=5, membrane_bits=8, synapse_bits=9, leak_shift=2, reset="subtract")
    leaked = [15, -5, 90, 75, -96]
    synapses = [5, 0, 30, 60, -100]
    (after, stored, spikes), = evaluate(dut, [(leaked, synapses)], threshold=10)
    # 15 + 5 = 20 fires, 20 - 10; -5 stays; 90 + 30 = 120 fires; 75 + 60 = 135 saturates to 127
    # and fires; -96 - 100 saturates to -128.
    assert after == [10, -5, 110, 117, -128]
    assert spikes == [1, 0, 1, 1, 0]
    # Next leak: 10 - 2 = 8, -5 + 2 = -3, 110 - 27 = 83, 117 - 29 = 88, -128 + 32 = -96.
    assert stored == [8, -3, 83, 88, -96]


def test_lif_hand_worked_zero_reset_no_leak():
    dut = LifUpdate(lanes=3, membrane_bits=6, synapse_bits=7, leak_shift=0, reset="zero")
    (after, stored, spikes), = evaluate(dut, [([5, 20, -3], [3, 30, -40])], threshold=8)
    # 5 + 3 = 8 fires and resets to 0; 20 + 30 saturates to 31 and fires; -43 saturates to -32.
    assert after == [0, 0, -32]
    assert stored == after
    assert spikes == [1, 1, 0]


def test_lif_first_step_ignores_stored_membrane():
    dut = LifUpdate(lanes=2, membrane_bits=8, synapse_bits=6, leak_shift=1, reset="subtract")
    (after, stored, spikes), = evaluate(dut, [([100, -100], [4, -4])], threshold=5, first_step=1)
    assert after == [4, -4]
    assert stored == [2, -2]
    assert spikes == [0, 0]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("leak_shift", [0, 3])
def test_lif_random_against_spec(reset, leak_shift):
    bits, syn_bits, lanes, theta = 7, 8, 4, 13
    rng = np.random.default_rng(leak_shift)
    membranes = [rng.integers(-64, 64, lanes) for _ in range(40)]
    cases = [(leak(v, leak_shift), rng.integers(-128, 128, lanes)) for v in membranes]
    dut = LifUpdate(lanes=lanes, membrane_bits=bits, synapse_bits=syn_bits,
                    leak_shift=leak_shift, reset=reset)
    for (leaked, synapses), (after, stored, spikes) in zip(cases,
                                                         evaluate(dut, cases, threshold=theta)):
        u = saturate(leaked + synapses, bits)
        fired = u >= theta
        expected = np.where(fired, u - theta if reset == "subtract" else 0, u)
        assert after == list(expected)
        assert stored == list(leak(expected, leak_shift))
        assert spikes == [int(f) for f in fired]


def test_lif_rejects_bad_parameters():
    with pytest.raises(ValueError, match="leak_shift must lie in 0..7, not 8"):
        LifUpdate(lanes=1, membrane_bits=8, synapse_bits=4, leak_shift=8, reset="zero")
    with pytest.raises(ValueError, match="reset must be one of"):
        LifUpdate(lanes=1, membrane_bits=8, synapse_bits=4, leak_shift=0, reset="hold")


@pytest.mark.parametrize("readout", ["integrate", "spike_count"])
def test_output_accumulator_groups_and_clear(readout):
    arch = ArchParams(sizes=(4, 5), lanes=2, readout=readout)  # 3 groups, the last one half used
    dut = OutputAccumulator(arch, synapse_bits=6)
    updates = [(0, [3, -2], 0b01), (2, [7, 9], 0b11), (1, [-5, 1], 0b10), (0, [1, 1], 0b11)]
    snapshots = []

    async def testbench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for group, synapses, spikes in updates:
            ctx.set(dut.update, 1)
            ctx.set(dut.group, group)
            ctx.set(dut.synapse[0], synapses[0])
            ctx.set(dut.synapse[1], synapses[1])
            ctx.set(dut.spikes, spikes)
            await ctx.tick()
        ctx.set(dut.update, 0)
        snapshots.append([ctx.get(dut.scores[j]) for j in range(arch.n_out)])
        ctx.set(dut.clear, 1)
        ctx.set(dut.update, 1)
        await ctx.tick()
        snapshots.append([ctx.get(dut.scores[j]) for j in range(arch.n_out)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    if readout == "integrate":
        # Lane 1 of group 2 would be o_5, past n_out: dropped.
        assert snapshots[0] == [4, -1, -5, 1, 7]
    else:
        assert snapshots[0] == [2, 1, 0, 1, 1]
    assert snapshots[1] == [0] * arch.n_out
