"""In-order checker: compares what the monitors saw with the reference, sample by sample.

Plain Python without cocotb, so it is unit-tested on its own. The monitors hand over trace events
and results as they happen. The checker keeps the reference records of the samples sent, in
order, and closes one record per result (or per abort). Every difference becomes a
:class:`Mismatch` naming the sample, timestep, layer, neuron, expected and actual value.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from .reference import ExpectedSample

__all__ = ["TraceEvent", "ObservedResult", "Mismatch", "SampleReport", "InOrderChecker"]


@dataclass(frozen=True)
class TraceEvent:
    """One cycle of the debug trace port: a group of ``lanes`` neurons after its update."""

    cycle: int
    step: int
    layer: int
    group: int
    spikes: int
    values: tuple[int, ...]


@dataclass(frozen=True)
class ObservedResult:
    """One transfer on the result stream.

    ``valid_cycle`` is the cycle in which ``out_valid`` rose and ``accept_cycle`` the cycle of the
    handshake; ``scores`` is None when the core does not expose them. ``unstable`` names a field
    that changed while the result waited for ``out_ready``.
    """

    valid_cycle: int
    accept_cycle: int
    klass: int
    steps: int
    cycles: int
    scores: tuple[int, ...] | None = None
    unstable: str | None = None


@dataclass(frozen=True)
class Mismatch:
    """The first difference found in one sample (or a protocol error)."""

    sample: int
    quantity: str
    expected: object
    actual: object
    timestep: int | None = None
    layer: int | None = None
    neuron: int | None = None
    cycle: int | None = None

    def __str__(self) -> str:
        where = [f"sample {self.sample}"]
        if self.timestep is not None:
            where.append(f"timestep {self.timestep}")
        if self.layer is not None:
            where.append(f"layer {self.layer}")
        if self.neuron is not None:
            where.append(f"neuron {self.neuron}")
        text = f"{', '.join(where)}: {self.quantity} expected {self.expected}, actual {self.actual}"
        if self.cycle is not None:
            text += f" (simulation cycle {self.cycle})"
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["text"] = str(self)
        for key in ("expected", "actual"):
            d[key] = _plain(d[key])
        return d


def _plain(value):
    """Convert NumPy scalars and arrays to JSON-friendly Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass
class SampleReport:
    """Outcome of one sample: the core's result fields and whether they matched."""

    index: int
    klass: int | None = None
    steps: int | None = None
    cycles: int | None = None
    cycles_measured: int | None = None
    trace_events: int = 0
    result_ok: bool = False
    trace_ok: bool = False
    aborted: bool = False
    mismatch: Mismatch | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mismatch"] = self.mismatch.to_dict() if self.mismatch else None
        return d


@dataclass
class _Pending:
    record: ExpectedSample
    last_beat_cycle: int | None = None
    events: list[TraceEvent] = field(default_factory=list)


class InOrderChecker:
    """Checks trace events and results against reference records, in the order samples were sent.

    Call :meth:`expect` before a sample's first beat, :meth:`sample_sent` with the cycle of its
    last beat, and feed :meth:`trace_event` and :meth:`result` from the monitors. A result closes
    the oldest open sample. :meth:`abort` closes it without a result, checking the trace seen so
    far as a prefix of the expected one.
    """

    def __init__(self, *, check_trace: bool = True, check_scores: bool = True):
        self.check_trace = check_trace
        self.check_scores = check_scores
        self._pending: deque[_Pending] = deque()
        self.reports: list[SampleReport] = []
        self.protocol_errors: list[Mismatch] = []
        self.events_checked = 0
        self.values_checked = 0

    # -- inputs from the drivers --------------------------------------------------------------
    def expect(self, record: ExpectedSample) -> None:
        """Queue the reference record of a sample about to be sent."""
        self._pending.append(_Pending(record))

    def sample_sent(self, index: int, last_beat_cycle: int) -> None:
        """Note the cycle in which the last beat of sample ``index`` was transferred."""
        for pending in self._pending:
            if pending.record.index == index:
                pending.last_beat_cycle = last_beat_cycle
                return
        raise KeyError(f"sample {index} was sent without a reference record; call expect() first")

    # -- inputs from the monitors -------------------------------------------------------------
    def trace_event(self, event: TraceEvent) -> None:
        """Attach a trace event to the oldest open sample (a protocol error if there is none)."""
        if not self._pending:
            self.protocol_error("trace event", "none while idle",
                                f"step {event.step} layer {event.layer} group {event.group}",
                                cycle=event.cycle)
            return
        self._pending[0].events.append(event)

    def result(self, result: ObservedResult) -> SampleReport | None:
        """Close the oldest open sample with a result and return its report."""
        if not self._pending:
            self.protocol_error("result", "none (no sample open)", f"class {result.klass}",
                                cycle=result.valid_cycle)
            return None
        pending = self._pending.popleft()
        report = self._close(pending, result)
        self.reports.append(report)
        return report

    def abort(self) -> SampleReport | None:
        """Close the oldest open sample without a result, as an abort or reset does."""
        if not self._pending:
            return None
        pending = self._pending.popleft()
        report = SampleReport(index=pending.record.index, aborted=True,
                              trace_events=len(pending.events))
        first = self._compare_trace(pending, prefix=True)
        report.trace_ok = first is None
        report.result_ok = True
        report.mismatch = first
        self.reports.append(report)
        return report

    def protocol_error(self, quantity: str, expected, actual, *, cycle: int | None = None) -> None:
        """Record a handshake or timing rule the core broke, charged to the oldest open sample."""
        sample = self._pending[0].record.index if self._pending else -1
        self.protocol_errors.append(Mismatch(sample, quantity, expected, actual, cycle=cycle))

    # -- summary ------------------------------------------------------------------------------
    @property
    def open_samples(self) -> int:
        """Number of samples sent or queued that have no result yet."""
        return len(self._pending)

    def first_mismatch(self) -> Mismatch | None:
        """Return the earliest mismatch by sample order, protocol errors included."""
        found = [r.mismatch for r in self.reports if r.mismatch is not None]
        found += self.protocol_errors
        if not found:
            return None
        return min(found, key=lambda m: (m.sample if m.sample >= 0 else 1 << 60,
                                         m.cycle if m.cycle is not None else 1 << 60))

    def summary(self) -> dict:
        """Return a JSON-friendly summary of every sample and mismatch."""
        first = self.first_mismatch()
        return {
            "samples": [r.to_dict() for r in self.reports],
            "result_mismatches": sum(1 for r in self.reports if not r.result_ok),
            "trace_mismatches": sum(1 for r in self.reports if not r.trace_ok),
            "protocol_errors": [m.to_dict() for m in self.protocol_errors],
            "open_samples": self.open_samples,
            "events_checked": self.events_checked,
            "values_checked": self.values_checked,
            "first_mismatch": first.to_dict() if first else None,
        }

    # -- comparison ---------------------------------------------------------------------------
    def _close(self, pending: _Pending, result: ObservedResult) -> SampleReport:
        record = pending.record
        report = SampleReport(index=record.index, klass=result.klass, steps=result.steps,
                              cycles=result.cycles, trace_events=len(pending.events))
        if pending.last_beat_cycle is not None:
            report.cycles_measured = result.valid_cycle - pending.last_beat_cycle
        value_mismatch = self._compare_trace(pending, prefix=True)
        length_mismatch = self._compare_trace_length(pending) if value_mismatch is None else None
        result_mismatch = self._compare_result(record, result, report.cycles_measured)
        report.trace_ok = value_mismatch is None and length_mismatch is None
        report.result_ok = result_mismatch is None
        # A wrong value inside the trace is the earliest cause. A wrong step count also shows
        # as a trace of the wrong length, but the result fields describe it better.
        report.mismatch = value_mismatch or result_mismatch or length_mismatch
        if report.mismatch is None and result.unstable:
            report.mismatch = Mismatch(record.index, "result held until accepted", "stable",
                                       f"{result.unstable} changed", cycle=result.accept_cycle)
            report.result_ok = False
        return report

    def _expected_headers(self, record: ExpectedSample):
        for t in range(record.steps):
            for k, values in enumerate(record.values):
                for g in range(values.shape[1] // record.lanes):
                    yield t, k, g

    def _compare_trace(self, pending: _Pending, *, prefix: bool) -> Mismatch | None:
        """Compare the trace events seen with the expected ones, up to the shorter of the two."""
        if not self.check_trace:
            return None
        record = pending.record
        lanes = record.lanes
        for event, (t, k, g) in zip(pending.events, self._expected_headers(record)):
            if (event.step, event.layer, event.group) != (t, k, g):
                return Mismatch(record.index, "trace event (step, layer, group)", (t, k, g),
                                (event.step, event.layer, event.group), timestep=t, layer=k,
                                cycle=event.cycle)
            self.events_checked += 1
            base = g * lanes
            expected_values = record.values[k][t, base:base + lanes]
            expected_spikes = record.spikes[k][t, base:base + lanes]
            for lane in range(lanes):
                neuron = base + lane
                self.values_checked += 1
                if event.values[lane] != expected_values[lane]:
                    return Mismatch(record.index, record.value_kind[k], int(expected_values[lane]),
                                    event.values[lane], timestep=t, layer=k, neuron=neuron,
                                    cycle=event.cycle)
                spike = (event.spikes >> lane) & 1
                if spike != int(expected_spikes[lane]):
                    return Mismatch(record.index, "spike", int(expected_spikes[lane]), spike,
                                    timestep=t, layer=k, neuron=neuron, cycle=event.cycle)
        return None

    def _compare_trace_length(self, pending: _Pending) -> Mismatch | None:
        if not self.check_trace:
            return None
        record = pending.record
        expected = record.trace_events()
        seen = len(pending.events)
        if seen == expected:
            return None
        headers = list(self._expected_headers(record))
        if seen < expected:
            t, k, g = headers[seen]
            return Mismatch(record.index, "trace events", expected, seen, timestep=t, layer=k)
        extra = pending.events[expected]
        return Mismatch(record.index, "trace events", expected, seen, timestep=extra.step,
                        layer=extra.layer, cycle=extra.cycle)

    def _compare_result(self, record: ExpectedSample, result: ObservedResult,
                        measured: int | None) -> Mismatch | None:
        checks = [("steps", record.steps, result.steps),
                  ("class", record.klass, result.klass),
                  ("result cycle (out_valid rise after the last input beat)", record.cycles,
                   measured),
                  ("out_cycles", record.cycles, result.cycles)]
        for quantity, expected, actual in checks:
            if actual != expected:
                return Mismatch(record.index, quantity, expected, actual, cycle=result.valid_cycle)
        if self.check_scores and result.scores is not None:
            for j, (want, got) in enumerate(zip(record.scores.tolist(), result.scores)):
                if want != got:
                    return Mismatch(record.index, "out_scores", want, got, timestep=record.steps - 1,
                                    layer=len(record.values) - 1, neuron=j,
                                    cycle=result.valid_cycle)
        return None
