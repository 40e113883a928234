"""Drivers for the accelerator core in the Amaranth simulator.

They speak the sample stream, the result stream and the register bus of
:class:`hdl.core.Accelerator` from ``sim.add_testbench`` coroutines, and ``run_core`` runs whole
samples. The tests in tests/test_hdl_*.py use them. Writing a waveform is opt-in: set
HDL_VCD_DIR to a folder and each simulation writes ``<name>.vcd`` there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from sw_model.model import Model
from sw_model.spec import EARLY_STOP_RULES, ArchParams, EarlyStopParams

from .core import Accelerator
from .regs import Register

TIMEOUT = 20000  # cycles any single wait may take before the test fails


def random_model(arch: ArchParams, *, seed: int, keep: float = 0.6, thresholds=None,
                 early_stop: EarlyStopParams | None = None) -> Model:
    """Return a model with random masks keeping about ``keep`` of the synapses."""
    rng = np.random.default_rng(seed)
    masks = [(rng.random((arch.sizes[k], arch.sizes[k + 1])) < keep).astype(np.uint8)
             for k in range(arch.n_layers)]
    if thresholds is None:
        thresholds = [4] * arch.spiking_layers
    if early_stop is None:
        early_stop = EarlyStopParams(rule="off", budget=arch.timesteps, min_steps=1)
    return Model(arch=arch, masks=masks, thresholds=list(thresholds), early_stop=early_stop)


def run_simulation(sim: Simulator, name: str) -> None:
    """Run ``sim`` to the end, writing ``<name>.vcd`` into HDL_VCD_DIR when that is set."""
    folder = os.environ.get("HDL_VCD_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(Path(folder) / f"{name}.vcd")):
            sim.run()
    else:
        sim.run()


async def wait_for(ctx, signal, value=1, timeout=TIMEOUT) -> int:
    """Tick until ``signal`` reads ``value``; return the ticks waited."""
    for waited in range(timeout):
        if ctx.get(signal) == value:
            return waited
        await ctx.tick()
    raise AssertionError(f"{signal!r} did not reach {value} within {timeout} cycles")


async def write_register(ctx, dut, address: int, value: int) -> None:
    """Write one register in one cycle."""
    ctx.set(dut.reg_addr, address)
    ctx.set(dut.reg_wdata, value)
    ctx.set(dut.reg_we, 1)
    await ctx.tick()
    ctx.set(dut.reg_we, 0)


async def read_register(ctx, dut, address: int) -> int:
    """Read one register: strobe ``reg_re`` for a cycle and return ``reg_rdata`` after it."""
    ctx.set(dut.reg_addr, address)
    ctx.set(dut.reg_re, 1)
    await ctx.tick()
    ctx.set(dut.reg_re, 0)
    return ctx.get(dut.reg_rdata)


async def write_early_stop(ctx, dut, es: EarlyStopParams) -> None:
    """Program every early-stop register from ``es``.

    ``MIN_STEPS`` goes to 1 before ``BUDGET`` changes, so that no write is out of range.
    """
    await write_register(ctx, dut, Register.MIN_STEPS, 1)
    await write_register(ctx, dut, Register.BUDGET, es.budget)
    await write_register(ctx, dut, Register.MIN_STEPS, es.min_steps)
    await write_register(ctx, dut, Register.ES_RULE, EARLY_STOP_RULES.index(es.rule))
    await write_register(ctx, dut, Register.MARGIN, es.margin)
    await write_register(ctx, dut, Register.CONF_LIMIT, es.conf_limit)
    if es.scale:
        await write_register(ctx, dut, Register.SCALE_ADDR, 0)
        for value in es.scale:
            await write_register(ctx, dut, Register.SCALE_DATA, value)


async def send_sample(ctx, dut, sample, *, gaps=None) -> None:
    """Send one sample; return after the cycle that transferred the last beat (cycle 0).

    ``gaps`` (a NumPy Generator) inserts random idle cycles between beats.
    """
    for value in sample:
        if gaps is not None:
            for _ in range(int(gaps.integers(0, 3))):
                ctx.set(dut.in_valid, 0)
                await ctx.tick()
        ctx.set(dut.in_valid, 1)
        ctx.set(dut.in_data, int(value))
        for _ in range(TIMEOUT):
            ready = ctx.get(dut.in_ready)
            await ctx.tick()
            if ready:
                break
        else:
            raise AssertionError(f"in_ready stayed low for {TIMEOUT} cycles")
    ctx.set(dut.in_valid, 0)


@dataclass
class CoreResult:
    """Result of one sample as the result stream delivered it, and the cycles the bench counted."""

    out_class: int
    steps: int
    cycles: int
    observed_cycles: int
    scores: list[int] | None = None
    trace: list[dict] = field(default_factory=list)


async def receive_result(ctx, dut, *, stall=None, scores=False) -> CoreResult:
    """Count cycles from cycle 1 to ``out_valid`` and accept the result.

    ``stall`` (a NumPy Generator) keeps ``out_ready`` low for a few cycles first and checks
    that the result stays unchanged meanwhile.
    """
    observed = 1 + await wait_for(ctx, dut.out_valid)
    result = CoreResult(out_class=ctx.get(dut.out_class), steps=ctx.get(dut.out_steps),
                        cycles=ctx.get(dut.out_cycles), observed_cycles=observed)
    if scores:
        result.scores = [ctx.get(dut.out_scores[j]) for j in range(len(dut.out_scores))]
    if stall is not None:
        for _ in range(int(stall.integers(1, 4))):
            ctx.set(dut.out_ready, 0)
            await ctx.tick()
            assert ctx.get(dut.out_valid) == 1
            assert ctx.get(dut.in_ready) == 0
            assert ctx.get(dut.out_class) == result.out_class
            assert ctx.get(dut.out_cycles) == result.cycles
    ctx.set(dut.out_ready, 1)
    await ctx.tick()
    ctx.set(dut.out_ready, 0)
    return result


def run_core(model: Model, samples, *, es: EarlyStopParams | None = None, trace: bool = False,
             seed: int = 0, name: str = "core") -> list[CoreResult]:
    """Run samples through the core one after another and return their results.

    With ``es`` the early-stop registers are written first. Random idle beats and result
    stalls exercise the handshakes; with ``trace`` every trace record is collected.
    """
    dut = Accelerator(model, trace=trace, expose_scores=True)
    rng = np.random.default_rng(seed)
    results = []
    records = []

    async def collect_trace(ctx):
        async for values in ctx.tick().sample(
                dut.trace_valid, dut.trace_step, dut.trace_layer, dut.trace_group,
                dut.trace_spikes, dut.trace_values):
            _clock, _reset, valid, step, layer, group, spikes, lanes = values
            if valid:
                records.append({"step": step, "layer": layer, "group": group, "spikes": spikes,
                                "values": [int(v) for v in lanes]})

    async def testbench(ctx):
        await wait_for(ctx, dut.in_ready)
        if es is not None:
            await write_early_stop(ctx, dut, es)
        for sample in samples:
            await send_sample(ctx, dut, sample, gaps=rng)
            results.append(await receive_result(ctx, dut, stall=rng, scores=True))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    if trace:
        sim.add_process(collect_trace)
    run_simulation(sim, name)
    if trace:
        # Records of all samples in order; tests with a trace send one sample.
        for result in results:
            result.trace = records
    return results
