"""cocotb tests of the generated core; run through ``verif.regression``, never directly.

Each test reads its case (model, samples, options) from the JSON file named by ``$VERIF_CASE``,
writes the checker's summary to the case's results file, and fails on the first mismatch.
"""

from __future__ import annotations

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sw_model import golden, schedule
from sw_model.model import load_model
from sw_model.spec import EarlyStopParams

from .registers import ID_VALUE, RULE_CODES, Reg, Status, masks_from_words, mask_words
from .testbench import Case, CoreTestbench, status_flags

# Eight register writes of two cycles each, plus slack, must fit inside one inference.
WRITE_WINDOW_CYCLES = 40
WRITE_ONLY = (Reg.CONTROL, Reg.SCALE_ADDR, Reg.SCALE_DATA, Reg.MASK_ADDR, Reg.MASK_DATA,
              Reg.MASK_COMMIT)
UNUSED_ADDRESS = 0x0F
ES_REGISTERS = (Reg.ES_RULE, Reg.BUDGET, Reg.MIN_STEPS, Reg.MARGIN, Reg.CONF_LIMIT)


def _es_values(es: EarlyStopParams) -> list[int]:
    return [RULE_CODES[es.rule], es.budget, es.min_steps, es.margin,
            es.conf_limit if es.rule == "confidence" else None]


async def _bench(dut, case: Case, **overrides) -> CoreTestbench:
    options = dict(seed=case.seed, gap_probability=case.gap_probability,
                   ready_probability=case.ready_probability)
    options.update(overrides)
    tb = CoreTestbench(dut, case.load_reference(), **options)
    await tb.start()
    return tb


async def _finish(tb: CoreTestbench, case: Case, **extra) -> None:
    case.write_results(tb.summary(**extra))
    tb.assert_clean()


async def _registers_hold(tb: CoreTestbench, es: EarlyStopParams, thresholds) -> list[str]:
    """Return a description of every early-stop or threshold register not holding its value."""
    wrong = []
    for address, want in zip(ES_REGISTERS, _es_values(es)):
        got = await tb.registers.read(address)
        if want is not None and got != want:
            wrong.append(f"{Reg(address).name} = {got}, expected {want}")
    for k, theta in enumerate(thresholds):
        got = await tb.registers.read(Reg.THRESHOLD_0 + k)
        if got != theta:
            wrong.append(f"THRESHOLD_{k} = {got}, expected {theta}")
    return wrong


@cocotb.test()
async def samples_match_golden(dut):
    """Check every sample against the golden model: trace, class, steps, result cycle."""
    case = Case.from_env()
    tb = await _bench(dut, case)
    x = case.load_samples()
    groups = sorted(case.es_groups, key=lambda g: g["start"]) or [{"start": 0, "es": None}]
    try:
        for n, group in enumerate(groups):
            stop = groups[n + 1]["start"] if n + 1 < len(groups) else len(x)
            if group["start"] >= len(x):
                break
            if group["es"] is not None:
                await tb.program_early_stop(EarlyStopParams(**group["es"]))
            await tb.run(x[group["start"]:stop])
    finally:
        case.write_results(tb.summary())
    tb.assert_clean()


@cocotb.test()
async def registers_after_reset(dut):
    """ID and reset values match the model; out-of-range writes are ignored and flagged."""
    case = Case.from_env()
    tb = await _bench(dut, case)
    model = tb.reference
    problems = []
    if (value := await tb.registers.read(Reg.ID)) != ID_VALUE:
        problems.append(f"ID = 0x{value:08x}, expected 0x{ID_VALUE:08x}")
    problems += await _registers_hold(tb, model.early_stop, model.thresholds)

    arch = model.arch
    for address in WRITE_ONLY + (UNUSED_ADDRESS, Reg.THRESHOLD_0 + arch.spiking_layers):
        if (value := await tb.registers.read(address)) != 0:
            problems.append(f"register 0x{address:02x} (write-only or unused) reads {value}, "
                            f"expected 0")

    theta_max = (1 << (arch.membrane_bits - 1)) - 1
    invalid = [(Reg.BUDGET, 0), (Reg.BUDGET, arch.timesteps + 1), (Reg.ES_RULE, 3),
               (Reg.MIN_STEPS, 0), (Reg.MIN_STEPS, model.early_stop.budget + 1),
               (Reg.MARGIN, 1 << arch.output_bits), (Reg.CONF_LIMIT, 1 << 24),
               (Reg.SCALE_ADDR, arch.timesteps), (Reg.MASK_ADDR, arch.words),
               (Reg.MASK_DATA, 0), (Reg.THRESHOLD_0, 0), (Reg.THRESHOLD_0, theta_max + 1),
               (Reg.ID, 0), (Reg.STATUS, 0), (UNUSED_ADDRESS, 0)]
    for address, value in invalid:
        await tb.registers.write(address, value)
        status = await tb.status()
        if not status & Status.WRITE_REJECTED:
            problems.append(f"writing {value} to register 0x{address:02x} did not set write "
                            f"rejected (STATUS {status_flags(status)})")
        await tb.clear_flags()
        if (status := await tb.status()) & Status.WRITE_REJECTED:
            problems.append(f"CONTROL clear flags left write rejected set after a write to "
                            f"register 0x{address:02x}")
    problems += await _registers_hold(tb, model.early_stop, model.thresholds)
    if (value := await tb.registers.read(Reg.ID)) != ID_VALUE:
        problems.append(f"ID = 0x{value:08x} after a write to it, expected 0x{ID_VALUE:08x}")

    x = case.load_samples()[:3]
    await tb.run(x)
    completed = (await tb.status()) >> 16
    if completed != len(x):
        problems.append(f"STATUS counts {completed} completed inferences, expected {len(x)}")
    await _finish(tb, case, problems=problems)
    assert not problems, "; ".join(problems)


@cocotb.test()
async def mask_update_between_inferences(dut):
    """Check that a mask written between inferences changes results as the golden model does."""
    case = Case.from_env()
    tb = await _bench(dut, case)
    trained = tb.reference
    other = load_model(case.extra_models["mask"])
    x = case.load_samples()
    problems = []
    await tb.run(x)

    # Open an update: in_ready must stay low until the commit.
    await tb.registers.write(Reg.MASK_ADDR, 0)
    status = await tb.status()
    await RisingEdge(dut.clk)
    await ReadOnly()
    if dut.in_ready.value != 0 or not status & Status.MASK_OPEN:
        problems.append(f"after MASK_ADDR: in_ready {dut.in_ready.value}, STATUS "
                        f"{status_flags(status)}; expected in_ready 0 and mask update open")
    for word in mask_words(tb.arch, other.masks):
        await tb.registers.write(Reg.MASK_DATA, word)
    await tb.registers.write(Reg.MASK_COMMIT, 0)
    if (status := await tb.status()) & Status.MASK_OPEN:
        problems.append(f"mask update still open after MASK_COMMIT (STATUS {status_flags(status)})")
    tb.reference = other
    await tb.run(x)

    # A partial update from the middle of the memory: only those words change.
    words = mask_words(tb.arch, trained.masks)
    start, stop = len(words) // 3, 2 * len(words) // 3
    await tb.registers.write(Reg.MASK_ADDR, start)
    for word in words[start:stop]:
        await tb.registers.write(Reg.MASK_DATA, word)
    await tb.registers.write(Reg.MASK_COMMIT, 0)
    mixed = mask_words(tb.arch, other.masks)
    mixed[start:stop] = words[start:stop]
    tb.reference = type(trained)(arch=trained.arch, masks=masks_from_words(tb.arch, mixed),
                                 thresholds=trained.thresholds, early_stop=trained.early_stop)
    await tb.run(x)

    # Writing the trained mask back restores the first results.
    await tb.write_mask(trained.masks)
    tb.reference = trained
    await tb.run(x)
    await _finish(tb, case, problems=problems)
    assert not problems, "; ".join(problems)


@cocotb.test()
async def writes_during_inference_rejected(dut):
    """Writes other than CONTROL during an inference are ignored and set write rejected."""
    case = Case.from_env()
    tb = await _bench(dut, case)
    x = case.load_samples()
    model = tb.reference
    problems = []
    # The samples with the most cycles leave time for the writes before their result appears.
    cycles = _golden_cycles(tb, x)
    longest = [n for n in np.argsort(-cycles)[:3] if cycles[n] >= WRITE_WINDOW_CYCLES]
    assert longest, f"no sample runs {WRITE_WINDOW_CYCLES} cycles or more, too short to write into"
    flipped = [1 - m for m in model.masks]

    for n in longest:
        tb.queue(x[n][None])
        # A write between the first and the last beat is rejected as well.
        while tb.samples.beats % tb.arch.n_in == 0:
            await RisingEdge(dut.clk)
        await tb.registers.write(Reg.BUDGET, 1)
        await tb.samples.wait_idle()
        await tb.registers.write(Reg.MASK_ADDR, 0)
        for word in mask_words(tb.arch, flipped)[:4]:
            await tb.registers.write(Reg.MASK_DATA, word)
        await tb.registers.write(Reg.MASK_COMMIT, 0)
        await tb.registers.write(Reg.THRESHOLD_0, 1)
        if tb.checker.open_samples != 1:
            problems.append(f"sample {n}: the result appeared before the writes ended, "
                            f"sooner than the {cycles[n]} cycles predicted")
        await tb.wait_results()
        status = await tb.status()
        if not status & Status.WRITE_REJECTED:
            problems.append(f"writes during an inference did not set write rejected "
                            f"(STATUS {status_flags(status)})")
        if status & Status.MASK_OPEN:
            problems.append("a MASK_ADDR write during an inference opened a mask update")
        await tb.clear_flags()
    problems += await _registers_hold(tb, model.early_stop, model.thresholds)

    # The mask is unchanged, so the golden model of the trained mask still applies.
    await tb.run(x)
    await _finish(tb, case, problems=problems)
    assert not problems, "; ".join(problems)


def _golden_cycles(tb: CoreTestbench, x: np.ndarray) -> np.ndarray:
    return golden.run(tb.reference, x, tb.es).cycles


@cocotb.test()
async def result_backpressure(dut):
    """Results hold under back-pressure, in_ready stays low, and STATUS shows the wait."""
    case = Case.from_env()
    tb = await _bench(dut, case, ready_probability=0.2, gap_probability=0.3)
    x = case.load_samples()
    problems = []
    await tb.run(x)

    tb.ready.set_probability(0.0)
    tb.queue(x[:1])
    await tb.wait_result_waiting(tb.timeout_cycles())
    await tb.idle_cycles(25)
    status = await tb.status()
    if not status & Status.RESULT_WAITING:
        problems.append(f"STATUS {status_flags(status)} while a result waits; expected "
                        f"result waiting")
    # The inference ends when out_valid rises, so a write while the result waits is accepted.
    await tb.registers.write(Reg.THRESHOLD_0, tb.reference.thresholds[0])
    if (status := await tb.status()) & Status.WRITE_REJECTED:
        problems.append(f"a write while a result waits was rejected (STATUS "
                        f"{status_flags(status)})")
    tb.ready.set_probability(1.0)
    await tb.wait_results()
    await _finish(tb, case, problems=problems)
    assert not problems, "; ".join(problems)


@cocotb.test()
async def back_to_back(dut):
    """Samples follow each other with no idle cycle: each first beat is taken when in_ready rises."""
    case = Case.from_env()
    tb = await _bench(dut, case, ready_probability=1.0, gap_probability=0.0)
    x = case.load_samples()
    tb.inputs.record(True)
    await tb.run(x)
    tb.inputs.record(False)
    first_beat, last_beat = tb.inputs.beat_cycles[0], tb.inputs.beat_cycles[-1]
    idle = [c for c in tb.inputs.idle_ready if first_beat <= c <= last_beat]
    await _finish(tb, case, idle_ready_cycles=idle)
    assert not idle, f"in_ready high without a beat in cycles {idle[:10]} between samples"


@cocotb.test()
async def abort_mid_inference(dut):
    """Abort ends an inference without a result; the next samples run from a clean state."""
    case = Case.from_env()
    tb = await _bench(dut, case)
    x = case.load_samples()
    rng = np.random.default_rng(case.seed)
    cycles = _golden_cycles(tb, x)
    clear_cycles = schedule.clear_cycles(tb.arch)
    problems = []

    for n, sample in enumerate(x):
        if cycles[n] < 12:
            continue
        tb.queue(sample[None])
        await tb.samples.wait_idle()
        await tb.idle_cycles(int(rng.integers(0, cycles[n] - 8)))
        if not (status := await tb.status()) & Status.BUSY:
            problems.append(f"STATUS {status_flags(status)} during an inference; expected busy")
        results = tb.results.results
        await tb.abort()
        write_cycle, ready_cycle = tb.last_abort
        if ready_cycle - write_cycle != clear_cycles + 1:
            problems.append(f"sample {n}: in_ready rose {ready_cycle - write_cycle} cycles after "
                            f"the abort write, expected sum_k G_k + 1 = {clear_cycles + 1}")
        await tb.idle_cycles(cycles[n] + 10)
        if tb.results.results != results:
            problems.append(f"sample {n}: a result appeared after abort")
        await tb.run(x[(n + 1) % len(x)][None])

    # A partly received sample is discarded.
    tb.send_partial(x[0], tb.arch.n_in // 2)
    await tb.samples.wait_idle()
    await tb.abort()
    await tb.wait_ready()
    await tb.run(x)
    await _finish(tb, case, problems=problems)
    assert not problems, "; ".join(problems)


@cocotb.test()
async def reset_mid_inference(dut):
    """Reset in an inference restores the reset values; later samples match the golden model."""
    case = Case.from_env()
    tb = await _bench(dut, case)
    x = case.load_samples()
    model = tb.reference
    rng = np.random.default_rng(case.seed + 1)
    cycles = _golden_cycles(tb, x)
    problems = []
    other_rule = "off" if model.early_stop.rule != "off" else "margin"
    changed = EarlyStopParams(rule=other_rule, budget=max(1, model.early_stop.budget // 2),
                              min_steps=1, margin=1)
    changed_cycles = golden.run(model, x, changed).cycles
    for n in np.argsort(-cycles)[:3]:
        await tb.program_early_stop(changed)
        tb.queue(x[n][None])
        await tb.samples.wait_idle()
        await tb.idle_cycles(int(rng.integers(0, max(changed_cycles[n] - 4, 1))))
        await tb.reset()
        problems += await _registers_hold(tb, model.early_stop, model.thresholds)
        await tb.run(x[n][None])
    await tb.run(x)
    await _finish(tb, case, problems=problems)
    assert not problems, "; ".join(problems)
