"""The testbench of one core: drivers, monitors, the golden reference and the in-order checker.

:class:`CoreTestbench` wires the parts together and offers the few operations the cocotb tests
in ``verif.tb_core`` are written in: reset, send samples and wait for their results, program
early-stop settings, write a mask, abort. Everything the checker finds ends up in
:meth:`CoreTestbench.summary`, which the tests write to the results file of the case.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cocotb.clock import Clock
from cocotb.triggers import Event, ReadOnly, RisingEdge, with_timeout
from cocotb.triggers import SimTimeoutError

from sw_model.model import Model, load_model
from sw_model.spec import EarlyStopParams

from .checker import InOrderChecker, SampleReport
from .drivers import CLOCK_PERIOD_NS, ReadyDriver, RegisterDriver, SampleDriver, cycle_now
from .monitors import CycleSampler, InputMonitor, ResultMonitor, TraceMonitor, has_port
from .reference import expected_samples, trace_value_bits
from .registers import Control, Reg, Status, early_stop_writes, mask_words

__all__ = ["Case", "CoreTestbench", "CASE_ENV"]

CASE_ENV = "VERIF_CASE"

log = logging.getLogger(__name__)


@dataclass
class Case:
    """The inputs of one simulation run, read from the JSON file named by ``$VERIF_CASE``.

    ``model`` is the model the core was generated from and ``reference_model`` the one the
    checker predicts with (the same file unless a test corrupts the expectation on purpose).
    ``es_groups`` lists ``{"start": i, "es": {...}}``: before sample ``i`` the early-stop
    registers are programmed with those settings (``null`` keeps the reset values).
    ``stop_after`` ends the run after that sample (used to re-run a failure with a waveform).
    """

    model: str
    samples: str
    results: str
    reference_model: str | None = None
    seed: int = 0
    gap_probability: float = 0.0
    ready_probability: float = 1.0
    es_groups: list = field(default_factory=list)
    stop_after: int | None = None
    extra_models: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Case":
        path = os.environ.get(CASE_ENV)
        if not path:
            raise RuntimeError(f"${CASE_ENV} is not set: run these tests through "
                               f"verif.regression, which writes the case file")
        return cls(**json.loads(Path(path).read_text()))

    def load_samples(self) -> np.ndarray:
        x = np.load(self.samples).astype(np.int64)
        if self.stop_after is not None:
            x = x[: self.stop_after + 1]
        return x

    def load_model(self) -> Model:
        return load_model(self.model)

    def load_reference(self) -> Model:
        return load_model(self.reference_model or self.model)

    def write_results(self, results: dict) -> None:
        path = Path(self.results)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, path)


class CoreTestbench:
    """Drivers, monitors, reference and checker around one core instance.

    ``reference`` is the model the checker predicts with. ``es`` tracks the early-stop settings
    in force, so that every queued sample is predicted with the values the registers contain.
    """

    def __init__(self, dut, reference: Model, *, seed: int = 0, gap_probability: float = 0.0,
                 ready_probability: float = 1.0):
        self.dut = dut
        self.reference = reference
        self.arch = reference.arch
        self.es: EarlyStopParams = reference.early_stop
        rng = np.random.default_rng(seed)
        self.checker = InOrderChecker(check_trace=has_port(dut, "trace_valid"))
        self.samples = SampleDriver(dut, on_sent=self.checker.sample_sent,
                                    gap_probability=gap_probability,
                                    rng=np.random.default_rng(rng.integers(1 << 32)))
        self.registers = RegisterDriver(dut)
        self.ready = ReadyDriver(dut, probability=ready_probability,
                                 rng=np.random.default_rng(rng.integers(1 << 32)))
        self.results = ResultMonitor(dut, on_result=self._on_result,
                                     on_error=self.checker.protocol_error, n_out=self.arch.n_out,
                                     score_bits=self.arch.output_bits)
        self.inputs = InputMonitor(dut, n_in=self.arch.n_in, on_error=self.checker.protocol_error)
        self.trace = None
        if self.checker.check_trace:
            self.trace = TraceMonitor(dut, lanes=self.arch.lanes,
                                      value_bits=trace_value_bits(self.arch),
                                      on_event=self.checker.trace_event,
                                      on_error=self.checker.protocol_error)
        monitors = [self.results, self.inputs] + ([self.trace] if self.trace else [])
        self.in_reset = True
        self.sampler = CycleSampler(dut, monitors, in_reset=lambda: self.in_reset)
        self._drained = Event()
        self._drained.set()
        self.next_index = 0
        self.expected_cycles = 0
        self.last_abort: tuple[int, int] | None = None  # (write cycle, cycle in_ready rose)

    # -- bring-up -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the clock, drive idle inputs, reset the core and start the monitors."""
        # Reset from time 0: a 4-state simulator would otherwise clock X through the core.
        self.dut.rst.value = 1
        Clock(self.dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
        self.samples.start()
        self.registers.start()
        self.ready.start()
        self.sampler.start()
        await self.reset()

    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` for ``cycles`` cycles, close open samples as aborted, wait until idle."""
        await RisingEdge(self.dut.clk)
        self.dut.rst.value = 1
        self.in_reset = True
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        # The monitors see the core again from the first cycle out of reset on.
        await RisingEdge(self.dut.clk)
        self.in_reset = False
        self._forget_open_samples()
        self.es = self.reference.early_stop
        await self.wait_ready()

    def _forget_open_samples(self) -> None:
        self.samples.flush()
        while self.checker.open_samples:
            self.checker.abort()
        self.inputs.forget()
        self._drained.set()

    async def wait_ready(self, timeout_cycles: int | None = None) -> int:
        """Wait until ``in_ready`` is high and return the cycle; fail after ``timeout_cycles``.

        The default allows the accumulator clearing pass (``sum_k G_k`` cycles) plus slack.
        """
        if timeout_cycles is None:
            timeout_cycles = 4 * sum(self.arch.groups(k) for k in range(self.arch.n_layers)) + 64
        for _ in range(timeout_cycles):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if self.dut.in_ready.value == 1:
                return cycle_now()
        raise AssertionError(f"in_ready stayed low for {timeout_cycles} cycles after reset or "
                             f"abort (cycle {cycle_now()})")

    # -- samples ------------------------------------------------------------------------------
    def queue(self, x: np.ndarray, *, index: int | None = None) -> list:
        """Predict ``x`` (int (N, n_in)) with the reference and queue it on the sample driver."""
        first = self.next_index if index is None else index
        records = expected_samples(self.reference, x, self.es, first_index=first)
        for record, sample in zip(records, x):
            self.checker.expect(record)
            self.samples.send(sample, record.index)
            self.expected_cycles += record.cycles
        self.next_index = first + len(records)
        if records:
            self._drained.clear()
        return records

    async def wait_result_waiting(self, timeout_cycles: int) -> int:
        """Wait until a result is held on the result stream and return the cycle it rose."""
        for _ in range(timeout_cycles):
            await RisingEdge(self.dut.clk)
            if self.results.waiting_since is not None:
                return self.results.waiting_since
        raise AssertionError(f"no result appeared within {timeout_cycles} cycles")

    def send_partial(self, sample, beats: int) -> None:
        """Queue the first ``beats`` beats of a sample with no reference (to be aborted)."""
        self.samples.send(list(sample)[:beats], None)

    def _on_result(self, result) -> None:
        self.checker.result(result)
        self.inputs.result_accepted()
        if self.checker.open_samples == 0:
            self._drained.set()

    async def wait_results(self, timeout_cycles: int | None = None) -> None:
        """Wait until every queued sample has its result; fail with the open sample on timeout."""
        if timeout_cycles is None:
            timeout_cycles = self.timeout_cycles()
        try:
            await with_timeout(self._drained.wait(), timeout_cycles * CLOCK_PERIOD_NS, "ns")
            # The last result arrived in a read-only phase; return where signals may be written.
            await RisingEdge(self.dut.clk)
        except SimTimeoutError:
            self.checker.protocol_error("result within the timeout", f"{timeout_cycles} cycles",
                                        "no result", cycle=cycle_now())
            raise AssertionError(f"no result for {self.checker.open_samples} open samples after "
                                 f"{timeout_cycles} cycles; first mismatch: "
                                 f"{self.checker.first_mismatch()}") from None

    def timeout_cycles(self) -> int:
        open_samples = self.checker.open_samples
        per_sample = self.arch.n_in * 8 + 200
        slack = 1.0 / max(self.ready.probability, 0.05)
        return int(2 * slack * (self.expected_cycles + open_samples * per_sample)) + 2000

    async def run(self, x: np.ndarray) -> list[SampleReport]:
        """Send samples back to back, wait for all results and return their reports."""
        done = len(self.checker.reports)
        self.expected_cycles = 0
        self.queue(x)
        await self.wait_results()
        return self.checker.reports[done:]

    # -- registers ----------------------------------------------------------------------------
    async def program_early_stop(self, es: EarlyStopParams) -> None:
        """Write the early-stop registers and predict later samples with ``es``."""
        await self.registers.write_many(early_stop_writes(self.arch, es))
        self.es = es

    async def write_mask(self, masks, *, commit: bool = True) -> None:
        """Write a whole mask through MASK_ADDR, MASK_DATA and (optionally) MASK_COMMIT."""
        await self.registers.write(Reg.MASK_ADDR, 0)
        for word in mask_words(self.arch, masks):
            await self.registers.write(Reg.MASK_DATA, word)
        if commit:
            await self.registers.write(Reg.MASK_COMMIT, 0)

    async def status(self) -> int:
        return await self.registers.read(Reg.STATUS)

    async def abort(self) -> int:
        """Write CONTROL.abort, wait until the core is idle again and return the write cycle.

        ``last_abort`` then holds the write cycle and the cycle in which ``in_ready`` rose.

        The open sample closes as aborted only when ``in_ready`` rises, so the trace events of
        groups still in the pipeline at the abort are checked against the reference too.
        """
        cycle = await self.registers.write(Reg.CONTROL, Control.ABORT)
        self.inputs.forget()
        self.samples.flush()
        ready = await self.wait_ready()
        self.last_abort = (cycle, ready)
        self._forget_open_samples()
        await RisingEdge(self.dut.clk)
        return cycle

    async def clear_flags(self) -> None:
        await self.registers.write(Reg.CONTROL, Control.CLEAR_FLAGS)

    async def idle_cycles(self, count: int) -> None:
        for _ in range(count):
            await RisingEdge(self.dut.clk)

    # -- results ------------------------------------------------------------------------------
    def summary(self, **extra) -> dict:
        """Return the checker's summary plus driver and monitor counts."""
        summary = self.checker.summary()
        summary.update(beats=self.samples.beats, results_seen=self.results.results,
                       trace_events_seen=self.trace.events if self.trace else 0,
                       register_writes=self.registers.writes, **extra)
        return summary

    def assert_clean(self) -> None:
        """Fail with the first mismatch when any sample or protocol check failed."""
        first = self.checker.first_mismatch()
        if first is not None:
            raise AssertionError(f"first mismatch: {first}")


def status_flags(value: int) -> str:
    """Describe a STATUS value for messages, e.g. ``busy|write rejected, 3 completed``."""
    names = [name.lower().replace("_", " ") for name, bit in Status.__members__.items()
             if value & bit]
    return f"{'|'.join(names) or 'idle'}, {value >> 16} completed"
