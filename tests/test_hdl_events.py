# amaranth: UnusedElaboratable=no
"""Spike queue in the Amaranth simulator: ascending hand-out after load and push."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.events import SpikeQueue


def simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


async def drain_heads(ctx, dut, gap=1, limit=300):
    """Pop every ``gap`` cycles until the queue is empty and return the heads in order."""
    heads = []
    for _ in range(gap - 1):
        await ctx.tick()
    while ctx.get(dut.head_valid):
        heads.append(ctx.get(dut.head))
        ctx.set(dut.pop, 1)
        await ctx.tick()
        ctx.set(dut.pop, 0)
        for _ in range(gap - 1):
            await ctx.tick()
        assert len(heads) <= limit, "queue does not empty"
    return heads


@pytest.mark.parametrize("parallel_load", [False, True])
@pytest.mark.parametrize("pop_gap", [1, 2])
@pytest.mark.parametrize("width,lanes", [(1, 1), (5, 1), (20, 3), (64, 8), (130, 8)])
def test_queue_load_hands_out_ascending(width, lanes, pop_gap, parallel_load):
    rng = np.random.default_rng(width)
    vectors = [0, (1 << width) - 1, 1 << (width - 1)]
    vectors += [int(rng.integers(0, 1 << min(width, 62))) << max(0, width - 62) for _ in range(4)]
    dut = SpikeQueue(width=width, lanes=lanes, pop_gap=pop_gap, parallel_load=parallel_load)
    got = []

    async def testbench(ctx):
        for vector in vectors:
            ctx.set(dut.load, 1)
            ctx.set(dut.load_spikes, vector)
            await ctx.tick()
            ctx.set(dut.load, 0)
            got.append(await drain_heads(ctx, dut, gap=pop_gap))

    simulate(dut, testbench)
    for vector, heads in zip(vectors, got):
        assert heads == [i for i in range(width) if vector >> i & 1], hex(vector)


@pytest.mark.parametrize("pop_gap", [1, 2])
def test_queue_push_groups(pop_gap):
    # Layer with 3 groups of 4 lanes; the first spiking group becomes the head.
    dut = SpikeQueue(width=12, lanes=4, pop_gap=pop_gap)
    pushes = [0b0000, 0b1010, 0b0001]
    got = []

    async def testbench(ctx):
        for group, spikes in enumerate(pushes):
            ctx.set(dut.push, 1)
            ctx.set(dut.push_group, group)
            ctx.set(dut.push_spikes, spikes)
            await ctx.tick()
            if group == 1:
                got.append(("head after group 1", ctx.get(dut.head_valid), ctx.get(dut.head)))
        ctx.set(dut.push, 0)
        got.append(("heads", await drain_heads(ctx, dut, gap=pop_gap)))

    simulate(dut, testbench)
    assert got[0] == ("head after group 1", 1, 5)
    assert got[1] == ("heads", [5, 7, 8])


def test_queue_push_overwrites_consumed_group():
    # After a full pass the queue is empty; a new layer's pushes start from clean positions.
    dut = SpikeQueue(width=6, lanes=3)
    got = []

    async def testbench(ctx):
        ctx.set(dut.load, 1)
        ctx.set(dut.load_spikes, 0b111111)
        await ctx.tick()
        ctx.set(dut.load, 0)
        got.append(await drain_heads(ctx, dut))
        for group, spikes in enumerate([0b100, 0b000]):
            ctx.set(dut.push, 1)
            ctx.set(dut.push_group, group)
            ctx.set(dut.push_spikes, spikes)
            await ctx.tick()
        ctx.set(dut.push, 0)
        got.append(await drain_heads(ctx, dut))

    simulate(dut, testbench)
    assert got == [[0, 1, 2, 3, 4, 5], [2]]


def test_queue_rejects_more_lanes_than_positions():
    with pytest.raises(ValueError, match=r"lanes must be an integer in 1..4 \(width\), not 5"):
        SpikeQueue(width=4, lanes=5)
