"""cocotb monitors of the core: result stream, sample-stream handshake and debug trace.

Each monitor looks at its signals once per cycle, after the rising edge has settled, through its
``sample(cycle)`` method, and hands transactions to a callback. One :class:`CycleSampler`
coroutine calls every monitor in turn: the simulation speed is set by cocotb's Python work per
cycle, and one coroutine per monitor would triple it. Values that are not 0 or 1 in every bit
where they matter are reported as protocol errors instead of being converted.
"""

from __future__ import annotations

from typing import Callable

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from .checker import ObservedResult, TraceEvent
from .drivers import cycle_now

__all__ = ["CycleSampler", "ResultMonitor", "InputMonitor", "TraceMonitor", "has_port"]


def has_port(dut, name: str) -> bool:
    """Return whether the toplevel has a port called ``name``."""
    try:
        getattr(dut, name)
    except AttributeError:
        return False
    return True


def _bit(handle) -> str:
    """Return a 1-bit signal as "0", "1", "X" or "Z" (cheaper than comparing Logic objects)."""
    return str(handle.value)


def _unpack_signed(word: int, lanes: int, bits: int) -> tuple[int, ...]:
    mask = (1 << bits) - 1
    values = []
    for lane in range(lanes):
        value = (word >> (lane * bits)) & mask
        if value >> (bits - 1):
            value -= 1 << bits
        values.append(value)
    return tuple(values)


class CycleSampler:
    """Calls ``sample(cycle)`` of each monitor once per cycle, in a read-only phase.

    ``in_reset()`` returns whether the testbench drives ``rst`` high. In those cycles the monitors
    are not sampled and forget any transfer in progress.
    """

    def __init__(self, dut, monitors, *, in_reset: Callable[[], bool]):
        self.dut = dut
        self.monitors = list(monitors)
        self.in_reset = in_reset
        self._task = None

    def start(self) -> None:
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        edge = RisingEdge(self.dut.clk)
        settled = ReadOnly()
        monitors = self.monitors
        while True:
            await edge
            await settled
            if self.in_reset():
                for monitor in monitors:
                    monitor.forget()
                continue
            cycle = cycle_now()
            for monitor in monitors:
                monitor.sample(cycle)


class ResultMonitor:
    """Watches ``out_valid``/``out_ready`` and reports each transferred result.

    The result's fields are read in the cycle ``out_valid`` rises and compared in every later
    cycle until the handshake, so a result that changes while it waits is reported as unstable.
    ``out_scores`` is decoded when the core has it (``n_out`` signed values of
    ``score_bits`` bits, class 0 in the low bits).
    """

    def __init__(self, dut, *, on_result: Callable[[ObservedResult], None],
                 on_error: Callable[..., None], n_out: int, score_bits: int):
        self.on_result = on_result
        self.on_error = on_error
        self.n_out = n_out
        self.score_bits = score_bits
        self._valid = dut.out_valid
        self._ready = dut.out_ready
        self._fields = (dut.out_class, dut.out_steps, dut.out_cycles)
        self._scores = dut.out_scores if has_port(dut, "out_scores") else None
        self.results = 0
        self.waiting_since: int | None = None
        self._waiting = None  # fields of the result waiting for out_ready
        self._unstable = None

    def forget(self) -> None:
        self._waiting = self.waiting_since = None

    def _read_fields(self):
        scores = None
        if self._scores is not None:
            scores = _unpack_signed(int(self._scores.value), self.n_out, self.score_bits)
        klass, steps, cycles = (int(handle.value) for handle in self._fields)
        return klass, steps, cycles, scores

    def sample(self, cycle: int) -> None:
        valid = _bit(self._valid)
        if valid != "1":
            if valid != "0":
                self.on_error("out_valid", "0 or 1", valid, cycle=cycle)
            elif self._waiting is not None:
                self.on_error("out_valid held until out_ready", 1, 0, cycle=cycle)
                self.forget()
            return
        try:
            fields = self._read_fields()
        except ValueError:
            self.on_error("result fields while out_valid", "0 or 1 in every bit", "X or Z",
                          cycle=cycle)
            return
        if self._waiting is None:
            self._waiting = fields
            self.waiting_since = cycle
            self._unstable = None
        elif fields != self._waiting and self._unstable is None:
            names = ("out_class", "out_steps", "out_cycles", "out_scores")
            self._unstable = next(n for n, a, b in zip(names, fields, self._waiting) if a != b)
        if _bit(self._ready) == "1":
            klass, steps, cycles, scores = self._waiting
            self.results += 1
            result = ObservedResult(valid_cycle=self.waiting_since, accept_cycle=cycle,
                                    klass=klass, steps=steps, cycles=cycles, scores=scores,
                                    unstable=self._unstable)
            self.forget()
            self.on_result(result)


class InputMonitor:
    """Counts sample beats and checks that ``in_ready`` stays low while an inference runs.

    After the ``n_in``-th beat of a sample the core is busy until its result transfers, which
    the testbench reports through :meth:`result_accepted`. An ``in_ready`` of 1 in that window
    breaks the rule "no new sample is taken before the result is accepted".
    """

    def __init__(self, dut, *, n_in: int, on_error: Callable[..., None]):
        self._in_ready = dut.in_ready
        self._in_valid = dut.in_valid
        self.n_in = n_in
        self.on_error = on_error
        self.beats = 0
        self.busy = False
        self.samples = 0
        self.recording = False
        self.idle_ready: list[int] = []
        self.beat_cycles: list[int] = []

    def forget(self) -> None:
        """Drop a partly counted sample and the busy state (after an abort or reset)."""
        self.beats = 0
        self.busy = False

    def result_accepted(self) -> None:
        self.busy = False

    def record(self, on: bool) -> None:
        """Start (clearing old records) or stop recording beat cycles and idle ready cycles."""
        if on:
            self.idle_ready.clear()
            self.beat_cycles.clear()
        self.recording = on

    def sample(self, cycle: int) -> None:
        ready = _bit(self._in_ready)
        if ready not in ("0", "1"):
            self.on_error("in_ready", "0 or 1", ready, cycle=cycle)
            return
        if self.busy:
            if ready == "1":
                self.on_error("in_ready while an inference runs or its result waits", 0, 1,
                              cycle=cycle)
                self.busy = False  # report once per sample
            return
        if ready != "1":
            return
        if _bit(self._in_valid) != "1":
            if self.recording:
                self.idle_ready.append(cycle)
            return
        if self.recording:
            self.beat_cycles.append(cycle)
        self.beats += 1
        if self.beats == self.n_in:
            self.beats = 0
            self.samples += 1
            self.busy = True


class TraceMonitor:
    """Decodes the debug trace port into :class:`TraceEvent` objects, one per ``trace_valid``."""

    def __init__(self, dut, *, lanes: int, value_bits: int,
                 on_event: Callable[[TraceEvent], None], on_error: Callable[..., None]):
        self.lanes = lanes
        self.value_bits = value_bits
        self.on_event = on_event
        self.on_error = on_error
        self.events = 0
        self._valid = dut.trace_valid
        self._fields = (dut.trace_step, dut.trace_layer, dut.trace_group, dut.trace_spikes)
        self._values = dut.trace_values
        width = len(dut.trace_values)
        if width != lanes * value_bits:
            raise AssertionError(f"trace_values is {width} bits wide, expected lanes ({lanes}) x "
                                 f"max(membrane_bits, output_bits) ({value_bits}) = "
                                 f"{lanes * value_bits}")

    def forget(self) -> None:
        """Nothing is in progress between cycles: every trace event is one cycle."""

    def sample(self, cycle: int) -> None:
        valid = _bit(self._valid)
        if valid != "1":
            if valid != "0":
                self.on_error("trace_valid", "0 or 1", valid, cycle=cycle)
            return
        try:
            step, layer, group, spikes = (int(handle.value) for handle in self._fields)
            values = _unpack_signed(int(self._values.value), self.lanes, self.value_bits)
        except ValueError:
            self.on_error("trace fields while trace_valid", "0 or 1 in every bit", "X or Z",
                          cycle=cycle)
            return
        self.events += 1
        self.on_event(TraceEvent(cycle, step, layer, group, spikes, values))
