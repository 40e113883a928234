"""cocotb monitors of the core: result stream, sample-stream handshake and debug trace.

Each monitor samples its signals once per cycle, after the rising edge has settled (ReadOnly),
and hands transactions to a callback. Values that are not 0 or 1 in every bit where they matter
are reported as protocol errors instead of being converted.
"""

from __future__ import annotations

from typing import Callable

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from .checker import ObservedResult, TraceEvent
from .drivers import cycle_now

__all__ = ["ResultMonitor", "InputMonitor", "TraceMonitor", "has_port"]


def has_port(dut, name: str) -> bool:
    """Return whether the toplevel has a port called ``name``."""
    try:
        getattr(dut, name)
    except AttributeError:
        return False
    return True


def _unpack_signed(word: int, lanes: int, bits: int) -> tuple[int, ...]:
    mask = (1 << bits) - 1
    values = []
    for lane in range(lanes):
        value = (word >> (lane * bits)) & mask
        if value >> (bits - 1):
            value -= 1 << bits
        values.append(value)
    return tuple(values)


class ResultMonitor:
    """Watches ``out_valid``/``out_ready`` and reports each transferred result.

    The result's fields are read in the cycle ``out_valid`` rises and compared in every later
    cycle until the handshake, so a result that changes while it waits is reported as unstable.
    ``out_scores`` is decoded when the core has it (``n_out`` signed values of
    ``score_bits`` bits, class 0 in the low bits).
    """

    def __init__(self, dut, *, on_result: Callable[[ObservedResult], None],
                 on_error: Callable[..., None], n_out: int, score_bits: int):
        self.dut = dut
        self.on_result = on_result
        self.on_error = on_error
        self.n_out = n_out
        self.score_bits = score_bits
        self.has_scores = has_port(dut, "out_scores")
        self._task = None
        self.results = 0
        self.waiting_since: int | None = None

    def start(self) -> None:
        self._task = cocotb.start_soon(self._run())

    def _fields(self):
        dut = self.dut
        scores = None
        if self.has_scores:
            scores = _unpack_signed(int(dut.out_scores.value), self.n_out, self.score_bits)
        return (int(dut.out_class.value), int(dut.out_steps.value),
                int(dut.out_cycles.value), scores)

    async def _run(self) -> None:
        dut = self.dut
        waiting = None  # (valid_cycle, fields) while a result waits for out_ready
        unstable = None
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.rst.value == 1:
                waiting = self.waiting_since = None
                continue
            valid = dut.out_valid.value
            if not valid.is_resolvable:
                self.on_error("out_valid", "0 or 1", str(valid), cycle=cycle_now())
                continue
            if valid != 1:
                if waiting is not None:
                    self.on_error("out_valid held until out_ready", 1, 0, cycle=cycle_now())
                    waiting = self.waiting_since = None
                continue
            cycle = cycle_now()
            try:
                fields = self._fields()
            except ValueError:
                self.on_error("result fields while out_valid", "0 or 1 in every bit",
                              "X or Z", cycle=cycle)
                continue
            if waiting is None:
                waiting = (cycle, fields)
                self.waiting_since = cycle
                unstable = None
            elif fields != waiting[1] and unstable is None:
                names = ("out_class", "out_steps", "out_cycles", "out_scores")
                unstable = next(n for n, a, b in zip(names, fields, waiting[1]) if a != b)
            if dut.out_ready.value == 1:
                klass, steps, cycles, scores = waiting[1]
                self.results += 1
                self.on_result(ObservedResult(valid_cycle=waiting[0], accept_cycle=cycle,
                                              klass=klass, steps=steps, cycles=cycles,
                                              scores=scores, unstable=unstable))
                waiting = None
                self.waiting_since = None


class InputMonitor:
    """Counts sample beats and checks that ``in_ready`` stays low while an inference runs.

    After the ``n_in``-th beat of a sample the core is busy until its result transfers. An
    ``in_ready`` of 1 in that window breaks the rule "no new sample is taken before the result
    is accepted". :meth:`forget` resets the count after an abort or reset.
    """

    def __init__(self, dut, *, n_in: int, on_error: Callable[..., None]):
        self.dut = dut
        self.n_in = n_in
        self.on_error = on_error
        self.beats = 0
        self.busy = False
        self.samples = 0
        self.recording = False
        self.idle_ready: list[int] = []
        self.beat_cycles: list[int] = []
        self._task = None

    def start(self) -> None:
        self._task = cocotb.start_soon(self._run())

    def forget(self) -> None:
        self.beats = 0
        self.busy = False

    def record(self, on: bool) -> None:
        """Start (clearing old records) or stop recording beat cycles and idle ready cycles."""
        if on:
            self.idle_ready.clear()
            self.beat_cycles.clear()
        self.recording = on

    async def _run(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.rst.value == 1:
                self.forget()
                continue
            ready = dut.in_ready.value
            if not ready.is_resolvable:
                self.on_error("in_ready", "0 or 1", str(ready), cycle=cycle_now())
                continue
            if self.busy:
                if ready == 1:
                    self.on_error("in_ready while an inference runs or its result waits", 0, 1,
                                  cycle=cycle_now())
                    self.busy = False  # report once per sample
                if dut.out_valid.value == 1 and dut.out_ready.value == 1:
                    self.busy = False
                continue
            if ready == 1:
                if dut.in_valid.value != 1:
                    if self.recording:
                        self.idle_ready.append(cycle_now())
                    continue
                if self.recording:
                    self.beat_cycles.append(cycle_now())
                self.beats += 1
                if self.beats == self.n_in:
                    self.beats = 0
                    self.samples += 1
                    self.busy = True


class TraceMonitor:
    """Decodes the debug trace port into :class:`TraceEvent` objects, one per ``trace_valid``."""

    def __init__(self, dut, *, lanes: int, value_bits: int,
                 on_event: Callable[[TraceEvent], None], on_error: Callable[..., None]):
        self.dut = dut
        self.lanes = lanes
        self.value_bits = value_bits
        self.on_event = on_event
        self.on_error = on_error
        self.events = 0
        self._task = None
        width = len(dut.trace_values)
        if width != lanes * value_bits:
            raise AssertionError(f"trace_values is {width} bits wide, expected lanes ({lanes}) x "
                                 f"max(membrane_bits, output_bits) ({value_bits}) = "
                                 f"{lanes * value_bits}")

    def start(self) -> None:
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            valid = dut.trace_valid.value
            if valid != 1 or dut.rst.value == 1:
                if not valid.is_resolvable:
                    self.on_error("trace_valid", "0 or 1", str(valid), cycle=cycle_now())
                continue
            cycle = cycle_now()
            try:
                event = TraceEvent(
                    cycle=cycle,
                    step=int(dut.trace_step.value),
                    layer=int(dut.trace_layer.value),
                    group=int(dut.trace_group.value),
                    spikes=int(dut.trace_spikes.value),
                    values=_unpack_signed(int(dut.trace_values.value), self.lanes,
                                          self.value_bits))
            except ValueError:
                self.on_error("trace fields while trace_valid", "0 or 1 in every bit", "X or Z",
                              cycle=cycle)
                continue
            self.events += 1
            self.on_event(event)
