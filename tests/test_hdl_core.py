# amaranth: UnusedElaboratable=no
"""Whole-core simulations against the NumPy golden model (sw_model.golden)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.core import Accelerator
from hdl.regs import Control, Register
from hdl.sim import (random_model, receive_result, run_core, run_simulation, send_sample,
                     wait_for, write_register)
from sw_model import golden
from sw_model.model import Model
from sw_model.spec import ArchParams, EarlyStopParams, confidence_limit, scale_table

# Small networks that together cover both weight sources, both readouts, both reset modes,
# leak on and off, saturation, lanes that do not divide a layer, layers of one or two groups
# (accumulator forwarding) and both input encoders.
CONFIGS = {
    "rom_integrate_margin": dict(
        arch=ArchParams(sizes=(6, 5, 3), lanes=2, timesteps=4, input_bits=3),
        thresholds=[3],
        early_stop=EarlyStopParams(rule="margin", budget=4, min_steps=2, margin=6)),
    "hash_spikecount_confidence": dict(
        arch=ArchParams(sizes=(5, 4, 4, 4), lanes=4, timesteps=5, input_bits=2,
                        readout="spike_count", reset="zero", leak_shift=0,
                        weight_source="hash", weight_seed=99),
        thresholds=[3, 2, 2],
        early_stop=EarlyStopParams(rule="confidence", budget=5, min_steps=2, alpha=0.5,
                                   confidence=0.6, scale=scale_table(0.5, 5),
                                   conf_limit=confidence_limit(0.6))),
    "rom_saturating_lognormal": dict(
        arch=ArchParams(sizes=(7, 5, 3), lanes=3, timesteps=6, input_bits=2, membrane_bits=5,
                        leak_shift=2, weight_dist="lognormal_pair", weight_seed=5),
        thresholds=[9],
        early_stop=EarlyStopParams(rule="off", budget=5, min_steps=1)),
    # 24 inputs of 5 bits cannot be scanned within a 7-cycle timestep: parallel encoder.
    "rom_parallel_encoder": dict(
        arch=ArchParams(sizes=(24, 3, 3), lanes=3, timesteps=4, input_bits=5, leak_shift=1),
        thresholds=[5],
        early_stop=EarlyStopParams(rule="margin", budget=4, min_steps=1, margin=3)),
    # 9 inputs scanned two per cycle: the last block RAM word is half padding.
    "rom_scan_padding": dict(
        arch=ArchParams(sizes=(9, 3, 3), lanes=3, timesteps=5, input_bits=4),
        thresholds=[4],
        early_stop=EarlyStopParams(rule="off", budget=5, min_steps=1)),
    "rom_one_lane_confidence": dict(
        arch=ArchParams(sizes=(4, 3, 2), lanes=1, timesteps=3, input_bits=2, leak_shift=1),
        thresholds=[2],
        early_stop=EarlyStopParams(rule="confidence", budget=3, min_steps=1, alpha=2.0,
                                   confidence=0.7, scale=scale_table(2.0, 3),
                                   conf_limit=confidence_limit(0.7))),
}


def make_model(name, seed=3):
    config = CONFIGS[name]
    return random_model(config["arch"], seed=seed, thresholds=config["thresholds"],
                        early_stop=config["early_stop"])


def make_samples(arch, count, seed):
    rng = np.random.default_rng(seed)
    high = (1 << arch.input_bits) - 1
    samples = [np.zeros(arch.n_in, dtype=np.int64), np.full(arch.n_in, high)]
    samples += list(rng.integers(0, high + 1, (count - 2, arch.n_in)))
    return np.array(samples)


def check_against_golden(model, results, x, es=None):
    reference = golden.run(model, x, es)
    for index, result in enumerate(results):
        assert result.out_class == reference.classes[index], f"class of sample {index}"
        assert result.steps == reference.steps[index], f"steps of sample {index}"
        assert result.cycles == reference.cycles[index], f"out_cycles of sample {index}"
        assert result.observed_cycles == reference.cycles[index], f"valid cycle of sample {index}"
        assert result.scores == list(reference.scores[index]), f"scores of sample {index}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_core_matches_golden(name):
    model = make_model(name)
    x = make_samples(model.arch, 8, seed=len(name))
    results = run_core(model, x, name=name)
    check_against_golden(model, results, x)


def test_core_settings_written_by_host():
    # Settings differ from the reset values and reach the core through the register bus.
    model = make_model("rom_integrate_margin")
    es = EarlyStopParams(rule="confidence", budget=3, min_steps=2, alpha=1.5, confidence=0.55,
                         scale=scale_table(1.5, 3), conf_limit=confidence_limit(0.55))
    x = make_samples(model.arch, 6, seed=11)
    results = run_core(model, x, es=es, name="host_settings")
    check_against_golden(model, results, x, es)


@pytest.mark.parametrize("min_steps", [1, 3])
def test_core_margin_stops_early(min_steps):
    # top1 - top2 >= 0 always holds, so a zero margin stops every run at t_min.
    model = make_model("rom_integrate_margin")
    es = EarlyStopParams(rule="margin", budget=4, min_steps=min_steps, margin=0)
    x = make_samples(model.arch, 5, seed=2)[2:]
    results = run_core(model, x, es=es, name="margin_zero")
    check_against_golden(model, results, x, es)
    assert [result.steps for result in results] == [min_steps] * len(results)


@pytest.mark.parametrize("name", ["rom_integrate_margin", "hash_spikecount_confidence"])
def test_core_trace_matches_golden(name):
    model = make_model(name)
    arch = model.arch
    x = make_samples(arch, 3, seed=4)[2:3]
    result, = run_core(model, x, trace=True, name=f"trace_{name}")
    reference = golden.run(model, x, trace=True)
    steps = int(reference.steps[0])

    expected = []
    for t in range(steps):
        for k in range(arch.n_layers):
            spiking = k < arch.spiking_layers
            if spiking:
                values = reference.trace.membrane[k][t, 0]
            else:
                values = reference.trace.outputs[t, 0]
            spikes = reference.trace.spikes[k][t, 0]
            for g in range(arch.groups(k)):
                lanes = range(g * arch.lanes, (g + 1) * arch.lanes)
                expected.append({
                    "step": t, "layer": k, "group": g,
                    "spikes": sum(1 << lane for lane, j in enumerate(lanes)
                                  if j < arch.sizes[k + 1] and spikes[j]),
                    "values": [int(values[j]) if j < arch.sizes[k + 1] else 0 for j in lanes],
                })
    assert len(result.trace) == len(expected)
    for got, want in zip(result.trace, expected):
        assert got == want


def test_core_rejects_binary_encoding():
    arch = ArchParams(sizes=(4, 3, 2), lanes=1, encoding="binary")
    model = Model(arch=arch, masks=[np.ones((4, 3), np.uint8), np.ones((3, 2), np.uint8)],
                  thresholds=[1])
    with pytest.raises(ValueError, match="supports only rate encoding"):
        Accelerator(model)


def test_core_holds_result_after_handshake():
    # The UART bridge reads the result outputs after the handshake, while it sends the response,
    # so they must keep their values through an abort and a partly sent sample.
    model = make_model("rom_integrate_margin")
    x = make_samples(model.arch, 2, seed=5)
    dut = Accelerator(model)
    held = []

    async def testbench(ctx):
        await wait_for(ctx, dut.in_ready)
        await send_sample(ctx, dut, x[0])
        result = await receive_result(ctx, dut)
        await ctx.tick().repeat(20)
        await write_register(ctx, dut, int(Register.CONTROL), int(Control.ABORT))
        await send_sample(ctx, dut, x[1][:-1])
        held.append((result, ctx.get(dut.out_class), ctx.get(dut.out_steps),
                     ctx.get(dut.out_cycles)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    run_simulation(sim, "result_hold")
    result, out_class, out_steps, out_cycles = held[0]
    assert out_class == result.out_class
    assert out_steps == result.steps
    assert out_cycles == result.cycles
