"""Weight sources and crossbar against sw_model.spec.layer_weights, in the Amaranth simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.crossbar import Crossbar
from hdl.layout import mask_words, unpack_lanes, weight_words, word_address
from hdl.weights import HashWeights, RomWeights
from sw_model.spec import ArchParams, layer_weights

ARCHS = {
    "gaussian_lanes4": ArchParams(sizes=(5, 6, 3), lanes=3, weight_bits=4, weight_seed=7),
    "lognormal_w3": ArchParams(sizes=(4, 5, 2), lanes=2, weight_bits=3,
                               weight_dist="lognormal_pair", weight_seed=0xDEADBEEF),
}


def all_groups(arch):
    return [(k, i, g) for k in range(arch.n_layers) for i in range(arch.sizes[k])
            for g in range(arch.groups(k))]


def expected_lanes(arch, table, k, i, g):
    """Return the lanes of group g of row i from a (fan_in, fan_out) table, 0 past the end."""
    values = []
    for lane in range(arch.lanes):
        j = g * arch.lanes + lane
        values.append(int(table[i, j]) if j < arch.sizes[k + 1] else 0)
    return values


def stream_groups(dut, latency, coordinates, setup=None):
    """Feed one coordinate per cycle and return the output lanes for each, in order."""
    results = []

    async def testbench(ctx):
        if setup is not None:
            await setup(ctx)
        outputs = []
        for k, i, g in coordinates + [coordinates[-1]] * latency:
            ctx.set(dut.layer, k)
            ctx.set(dut.row, i)
            ctx.set(dut.group, g)
            await ctx.tick()
            lanes = dut.weights.shape().length
            outputs.append([ctx.get(dut.weights[lane]) for lane in range(lanes)])
        results.extend(outputs[latency - 1:latency - 1 + len(coordinates)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return results


def test_rom_words_follow_layout():
    arch = ARCHS["gaussian_lanes4"]
    words = weight_words(arch)
    assert len(words) == arch.words
    for k, i, g in all_groups(arch):
        word = words[word_address(arch, k, i, g)]
        lanes = unpack_lanes(word, arch.lanes, arch.weight_bits)
        assert lanes == expected_lanes(arch, layer_weights(arch, k), k, i, g), (k, i, g)


@pytest.mark.parametrize("name", sorted(ARCHS))
@pytest.mark.parametrize("source", [RomWeights, HashWeights])
def test_source_matches_spec(name, source):
    arch = ARCHS[name]
    dut = source(arch)
    coordinates = all_groups(arch)
    outputs = stream_groups(dut, dut.latency, coordinates)
    for (k, i, g), lanes in zip(coordinates, outputs):
        assert lanes == expected_lanes(arch, layer_weights(arch, k), k, i, g), (k, i, g)


def test_hash_source_on_wide_layer():
    # 14-bit row and column fields and layers past 0: rows near the top of a wide layer.
    arch = ArchParams(sizes=(3000, 40, 2), lanes=8, weight_source="hash", weight_seed=12345)
    dut = HashWeights(arch)
    coordinates = [(0, 2999, 4), (0, 1024, 0), (1, 39, 0), (0, 0, 3), (1, 17, 0)]
    outputs = stream_groups(dut, dut.latency, coordinates)
    for (k, i, g), lanes in zip(coordinates, outputs):
        assert lanes == expected_lanes(arch, layer_weights(arch, k), k, i, g), (k, i, g)


@pytest.mark.parametrize("weight_source", ["rom", "hash"])
def test_crossbar_masks_and_rewrites(weight_source):
    arch = ArchParams(sizes=(4, 5, 3), lanes=2, weight_bits=4, weight_seed=3,
                      weight_source=weight_source)
    rng = np.random.default_rng(1)
    masks = [rng.integers(0, 2, (arch.sizes[k], arch.sizes[k + 1])) for k in range(arch.n_layers)]
    dut = Crossbar(arch, masks)
    coordinates = all_groups(arch)

    outputs = stream_groups(dut, dut.latency, coordinates)
    for (k, i, g), lanes in zip(coordinates, outputs):
        masked = layer_weights(arch, k) * masks[k]
        assert lanes == expected_lanes(arch, masked, k, i, g), (k, i, g)

    # Rewrite the mask through the write port: every synapse kept.
    full = [np.ones_like(mask) for mask in masks]
    words = mask_words(arch, full)

    async def write_masks(ctx):
        for address, word in enumerate(words):
            ctx.set(dut.mask_addr, address)
            ctx.set(dut.mask_data, word)
            ctx.set(dut.mask_we, 1)
            await ctx.tick()
        ctx.set(dut.mask_we, 0)

    dut = Crossbar(arch, masks)
    outputs = stream_groups(dut, dut.latency, coordinates, setup=write_masks)
    for (k, i, g), lanes in zip(coordinates, outputs):
        assert lanes == expected_lanes(arch, layer_weights(arch, k), k, i, g), (k, i, g)
