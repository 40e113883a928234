# amaranth: UnusedElaboratable=no
"""Input encoder in the Amaranth simulator: both implementations against spec.input_spikes."""

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hdl.encoder import InputEncoder, scan_width
from sw_model.spec import ArchParams, input_spikes

# One sample per block RAM word, two per word with padding, and the flip-flop encoder.
CASES = {
    "serial_1": ArchParams(sizes=(6, 5, 3), lanes=2, timesteps=8, input_bits=3),
    "serial_2_padded": ArchParams(sizes=(9, 3, 3), lanes=3, timesteps=16, input_bits=4),
    "parallel": ArchParams(sizes=(24, 3, 3), lanes=3, timesteps=4, input_bits=5),
}


def bits_of(value, count):
    return [bool(value >> i & 1) for i in range(count)]


async def send_sample(ctx, dut, x, *, gaps=False):
    """Send the beats of sample ``x``; with ``gaps``, an idle cycle after every third beat."""
    for i, value in enumerate(x):
        ctx.set(dut.beat, 1)
        ctx.set(dut.beat_last, i == len(x) - 1)
        ctx.set(dut.beat_data, int(value))
        await ctx.tick()
        if gaps and i % 3 == 1:
            ctx.set(dut.beat, 0)
            await ctx.tick()
    ctx.set(dut.beat, 0)


async def encode_step(ctx, dut, step):
    """Pulse ``prepare`` for ``step`` and wait until ``spikes`` shows the result."""
    ctx.set(dut.prepare, 1)
    ctx.set(dut.step, step)
    await ctx.tick()
    ctx.set(dut.prepare, 0)
    for _ in range(dut.latency - 1):
        await ctx.tick()


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoder_matches_spec(name):
    arch = CASES[name]
    dut = InputEncoder(arch)
    rng = np.random.default_rng(len(name))
    samples = [rng.integers(0, 1 << arch.input_bits, arch.n_in) for _ in range(2)]
    samples[1][0] = 0
    seen = []

    async def testbench(ctx):
        for x in samples:
            await send_sample(ctx, dut, x, gaps=True)
            seen.append((x, 0, ctx.get(dut.spikes)))
            for t in range(arch.timesteps - 1):
                await encode_step(ctx, dut, t)
                seen.append((x, t + 1, ctx.get(dut.spikes)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert (scan_width(arch) is None) == (name == "parallel")
    assert len(seen) == 2 * arch.timesteps
    for x, t, spikes in seen:
        assert bits_of(spikes, arch.n_in) == list(input_spikes(x, t, arch.input_bits)), (x, t)


def test_encoder_stop_restarts_sample():
    arch = CASES["serial_2_padded"]
    dut = InputEncoder(arch)
    x = np.arange(arch.n_in) % 16
    seen = []

    async def testbench(ctx):
        # Three beats, then an abort; the full sample follows.
        for value in [5, 6, 7]:
            ctx.set(dut.beat, 1)
            ctx.set(dut.beat_data, value)
            await ctx.tick()
        ctx.set(dut.beat, 0)
        ctx.set(dut.stop, 1)
        await ctx.tick()
        ctx.set(dut.stop, 0)
        await send_sample(ctx, dut, x)
        await encode_step(ctx, dut, 2)
        seen.append(ctx.get(dut.spikes))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert bits_of(seen[0], arch.n_in) == list(input_spikes(x, 3, arch.input_bits))


def test_encoder_rejects_serial_when_too_slow():
    with pytest.raises(ValueError, match="cannot read 24 samples within the shortest timestep"):
        InputEncoder(CASES["parallel"], serial=True)


class _Platform:
    def __init__(self, device):
        self.device = device


@pytest.mark.parametrize("device, style", [("iCE40UP5K", "block"), ("LFE5U-85F", "distributed")])
def test_encoder_store_style_per_family(device, style):
    from hdl.synthesis import RDWR_DONT_CARE_PREFIX

    module = InputEncoder(CASES["serial_1"]).elaborate(_Platform(device))
    store, _ = module._named_submodules[RDWR_DONT_CARE_PREFIX + "samples"]
    assert store.attrs["ram_style"] == style
    # Building the fragment marks every part as used, so no warning fires at garbage collection.
    Fragment.get(module, _Platform(device))
