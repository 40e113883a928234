# amaranth: UnusedElaboratable=no
"""Register rules of the core: reset values, range checks, rejection during inference, mask
updates and abort, in the Amaranth simulator against sw_model.golden."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hdl.core import Accelerator
from hdl.layout import mask_words
from hdl.regs import ID_VALUE, Register, Status, exceeds
from hdl.sim import random_model, read_register, receive_result, send_sample, wait_for, \
    write_register
from sw_model import golden
from sw_model.model import Model
from sw_model.schedule import clear_cycles
from sw_model.spec import ArchParams, EarlyStopParams

ARCH = ArchParams(sizes=(6, 5, 3), lanes=2, timesteps=4, input_bits=3, membrane_bits=8)
EARLY_STOP = EarlyStopParams(rule="margin", budget=3, min_steps=2, margin=5)


def make_model(seed=3, masks=None):
    model = random_model(ARCH, seed=seed, thresholds=[3], early_stop=EARLY_STOP)
    if masks is not None:
        model = Model(arch=ARCH, masks=masks, thresholds=model.thresholds,
                      early_stop=model.early_stop)
    return model


def simulate(model, testbench):
    dut = Accelerator(model, expose_scores=True)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        await testbench(ctx, dut)

    sim.add_testbench(bench)
    sim.run()


async def status(ctx, dut):
    return await read_register(ctx, dut, Register.STATUS)


def test_regs_reset_values():
    model = make_model()
    reads = {}

    async def testbench(ctx, dut):
        await wait_for(ctx, dut.in_ready)
        for register in [Register.ID, Register.STATUS, Register.ES_RULE, Register.BUDGET,
                         Register.MIN_STEPS, Register.MARGIN, Register.CONF_LIMIT,
                         Register.THRESHOLD_0, Register.SCALE_ADDR, Register.MASK_ADDR, 0x7F]:
            reads[register] = await read_register(ctx, dut, register)

    simulate(model, testbench)
    assert reads == {
        Register.ID: ID_VALUE, Register.STATUS: 0, Register.ES_RULE: 1, Register.BUDGET: 3,
        Register.MIN_STEPS: 2, Register.MARGIN: 5, Register.CONF_LIMIT: 0,
        Register.THRESHOLD_0: 3, Register.SCALE_ADDR: 0, Register.MASK_ADDR: 0, 0x7F: 0,
    }


# (register, rejected value, accepted value); the accepted write runs second.
RANGE_CASES = [
    (Register.ES_RULE, 3, 2),
    (Register.BUDGET, 0, 4),
    (Register.BUDGET, 5, 3),
    (Register.MIN_STEPS, 4, 3),      # above the budget of 3
    (Register.MIN_STEPS, 0, 1),
    (Register.MARGIN, 1 << ARCH.output_bits, (1 << ARCH.output_bits) - 1),
    (Register.CONF_LIMIT, 1 << 24, (1 << 24) - 1),
    (Register.THRESHOLD_0, 0, 1),
    (Register.THRESHOLD_0, 128, 127),  # membrane_bits 8: theta <= 127
    (Register.SCALE_ADDR, 4, 3),
    (Register.MASK_ADDR, ARCH.words, ARCH.words - 1),
    (Register.ID, 0, None),            # read-only
    (Register.STATUS, 0, None),
    (0x3F, 0, None),                   # unused
]


def test_regs_reject_out_of_range():
    model = make_model()
    seen = []

    async def testbench(ctx, dut):
        await wait_for(ctx, dut.in_ready)
        for register, bad, good in RANGE_CASES:
            case = {}
            case["before"] = await read_register(ctx, dut, register)
            await write_register(ctx, dut, register, bad)
            case["after_bad"] = await read_register(ctx, dut, register)
            case["flag"] = await status(ctx, dut) & Status.WRITE_REJECTED
            await write_register(ctx, dut, Register.CONTROL, 0b10)
            case["cleared"] = await status(ctx, dut) & Status.WRITE_REJECTED
            if good is not None:
                await write_register(ctx, dut, register, good)
                case["flag_good"] = await status(ctx, dut) & Status.WRITE_REJECTED
                case["after_good"] = await read_register(ctx, dut, register)
            seen.append(case)

    simulate(model, testbench)
    for (register, bad, good), case in zip(RANGE_CASES, seen):
        name = f"{getattr(register, 'name', hex(register))} = {bad}"
        if register != Register.STATUS:  # STATUS shows the flag itself
            assert case["after_bad"] == case["before"], name
        assert case["flag"], name
        assert not case["cleared"], name
        if good is not None:
            assert not case["flag_good"], name
            if register not in (Register.SCALE_ADDR, Register.MASK_ADDR):  # write-only
                assert case["after_good"] == good, name


def test_regs_mask_data_rules():
    model = make_model()
    flags = []

    async def testbench(ctx, dut):
        await wait_for(ctx, dut.in_ready)
        await write_register(ctx, dut, Register.MASK_DATA, 1)           # no update open
        flags.append(await status(ctx, dut))
        await write_register(ctx, dut, Register.CONTROL, 0b10)
        await write_register(ctx, dut, Register.MASK_ADDR, ARCH.words - 1)
        await write_register(ctx, dut, Register.MASK_DATA, 1 << ARCH.lanes)  # too wide
        flags.append(await status(ctx, dut))
        await write_register(ctx, dut, Register.CONTROL, 0b10)
        await write_register(ctx, dut, Register.MASK_DATA, 0b11)         # last word: accepted
        await write_register(ctx, dut, Register.MASK_DATA, 0b11)         # past the memory
        flags.append(await status(ctx, dut))
        await write_register(ctx, dut, Register.MASK_COMMIT, 0)
        flags.append(await status(ctx, dut))

    simulate(model, testbench)
    rejected, open_ = Status.WRITE_REJECTED, Status.MASK_OPEN
    assert flags == [rejected, rejected | open_, rejected | open_, rejected]


def test_regs_rejected_during_inference():
    model = make_model()
    x = np.array([[7, 3, 0, 5, 6, 1]])
    reference = golden.run(model, x)
    seen = {}

    async def testbench(ctx, dut):
        await wait_for(ctx, dut.in_ready)
        await send_sample(ctx, dut, x[0, :1])
        # From the first beat on, the inference runs: the threshold write is ignored.
        await write_register(ctx, dut, Register.THRESHOLD_0, 100)
        seen["busy_receiving"] = await status(ctx, dut)
        await send_sample(ctx, dut, x[0, 1:])
        await write_register(ctx, dut, Register.MASK_ADDR, 0)
        seen["busy_computing"] = await status(ctx, dut)
        await write_register(ctx, dut, Register.CONTROL, 0b10)  # CONTROL is always accepted
        seen["cleared"] = await status(ctx, dut)
        seen["in_ready"] = ctx.get(dut.in_ready)
        await wait_for(ctx, dut.out_valid)
        seen["waiting"] = await status(ctx, dut)
        seen["result"] = await receive_result(ctx, dut)
        seen["done"] = await status(ctx, dut)
        seen["threshold"] = await read_register(ctx, dut, Register.THRESHOLD_0)

    simulate(model, testbench)
    busy, rejected = Status.BUSY, Status.WRITE_REJECTED
    assert seen["busy_receiving"] == busy | rejected
    assert seen["busy_computing"] == busy | rejected
    assert seen["cleared"] == busy
    assert seen["in_ready"] == 0
    assert seen["waiting"] == Status.RESULT_WAITING | (1 << 16)
    assert seen["done"] == 1 << 16
    assert seen["threshold"] == 3
    assert seen["result"].out_class == reference.classes[0]
    assert seen["result"].cycles == reference.cycles[0]


def test_regs_mask_update_applies_and_blocks_input():
    model = make_model(seed=3)
    rng = np.random.default_rng(8)
    new_masks = [rng.integers(0, 2, (ARCH.sizes[k], ARCH.sizes[k + 1])).astype(np.uint8)
                 for k in range(ARCH.n_layers)]
    updated = make_model(masks=new_masks)
    x = np.array([[7, 7, 6, 5, 7, 4], [2, 7, 7, 0, 6, 7]])
    reference = golden.run(updated, x)
    assert (reference.scores != golden.run(model, x).scores).any(), "masks must matter"
    seen = {"ready_while_open": [], "results": []}

    async def testbench(ctx, dut):
        await wait_for(ctx, dut.in_ready)
        await write_register(ctx, dut, Register.MASK_ADDR, 0)
        for word in mask_words(ARCH, new_masks):
            seen["ready_while_open"].append(ctx.get(dut.in_ready))
            await write_register(ctx, dut, Register.MASK_DATA, word)
        seen["ready_while_open"].append(ctx.get(dut.in_ready))
        await write_register(ctx, dut, Register.MASK_COMMIT, 0)
        seen["status"] = await status(ctx, dut)
        for sample in x:
            await send_sample(ctx, dut, sample)
            seen["results"].append(await receive_result(ctx, dut, scores=True))

    simulate(model, testbench)
    assert not any(seen["ready_while_open"])
    assert seen["status"] == 0
    for index, result in enumerate(seen["results"]):
        assert result.scores == list(reference.scores[index])
        assert result.cycles == reference.cycles[index]


def test_abort_clears_and_recovers():
    model = make_model()
    x = np.array([[7, 7, 7, 7, 7, 7], [5, 0, 6, 2, 7, 3]])
    reference = golden.run(model, x[1:])
    seen = {}

    async def testbench(ctx, dut):
        await wait_for(ctx, dut.in_ready)
        # Abort in the middle of an inference: no result, clearing, then idle.
        await send_sample(ctx, dut, x[0])
        for _ in range(12):
            await ctx.tick()
        await write_register(ctx, dut, Register.CONTROL, 0b01)
        seen["clear_wait"] = await wait_for(ctx, dut.in_ready)
        seen["valid_after_abort"] = ctx.get(dut.out_valid)
        # Abort a partly received sample.
        await send_sample(ctx, dut, x[0, :3])
        await write_register(ctx, dut, Register.CONTROL, 0b01)
        await wait_for(ctx, dut.in_ready)
        await send_sample(ctx, dut, x[1])
        seen["result"] = await receive_result(ctx, dut, scores=True)
        seen["status"] = await status(ctx, dut)

    simulate(model, testbench)
    assert seen["clear_wait"] == clear_cycles(ARCH)
    assert seen["valid_after_abort"] == 0
    assert seen["result"].scores == list(reference.scores[0])
    assert seen["result"].cycles == reference.cycles[0]
    assert seen["result"].out_class == reference.classes[0]
    assert seen["status"] >> 16 == 1  # only the finished inference counts


@pytest.mark.parametrize("width", [1, 3, 4, 5, 9])
def test_exceeds_matches_comparison(width):
    limits = sorted({-1, 0, 1, 5, 2 ** width - 2, 2 ** width - 1, 2 ** width + 3})
    value = Signal(width)
    flags = [Signal(name=f"above_{i}") for i in range(len(limits))]
    m = Module()
    for flag, limit in zip(flags, limits):
        m.d.comb += flag.eq(exceeds(value, limit))
    mismatches = []

    async def bench(ctx):
        for v in range(2 ** width):
            ctx.set(value, v)
            for flag, limit in zip(flags, limits):
                if ctx.get(flag) != (v > limit):
                    mismatches.append((v, limit))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert mismatches == []
