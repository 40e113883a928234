"""Reference model of the testbench: what the core must show per sample, from the golden model.

The golden model (``sw_model.golden``) computes a whole batch. This module cuts its trace into
the per-sample records the checker compares against, laid out the way the debug trace port
shows them. Each (timestep, layer) gets one row of ``G_k * lanes`` values, and lanes past the
end of a layer are padded with 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw_model import golden
from sw_model.model import Model
from sw_model.spec import ArchParams, EarlyStopParams

__all__ = ["ExpectedSample", "expected_samples", "trace_value_bits"]


def trace_value_bits(arch: ArchParams) -> int:
    """Return the width of one lane of ``trace_values``: ``max(V, output_bits)``."""
    return max(arch.membrane_bits, arch.output_bits)


@dataclass
class ExpectedSample:
    """Everything the core must produce for one sample.

    ``spikes[k]`` is bool (steps, G_k * lanes) and ``values[k]`` int64 (steps, G_k * lanes).
    They are the spikes and the membranes after reset (or ``o_j`` for an integrating output
    layer) of layer ``k`` at each executed timestep, and ``value_kind[k]`` names which.
    ``scores`` is int64 (n_out,).
    """

    index: int
    klass: int
    steps: int
    cycles: int
    scores: np.ndarray
    spikes: list[np.ndarray]
    values: list[np.ndarray]
    value_kind: list[str]
    lanes: int

    def trace_events(self) -> int:
        """Return the number of trace events (one per group, layer and step) expected."""
        return sum(v.shape[0] * (v.shape[1] // self.lanes) for v in self.values)


def _padded(array: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros(array.shape[:-1] + (width,), dtype=array.dtype)
    out[..., : array.shape[-1]] = array
    return out


def expected_samples(model: Model, x: np.ndarray, es: EarlyStopParams | None = None, *,
                     first_index: int = 0) -> list[ExpectedSample]:
    """Run the golden model on ``x`` (int (N, n_in)) and return one record per sample.

    ``es`` defaults to the model's own early-stop settings; ``first_index`` numbers the samples
    when ``x`` is a slice of a longer run.
    """
    arch = model.arch
    result = golden.run(model, x, es, trace=True)
    trace = result.trace
    records = []
    for b in range(len(x)):
        steps = int(result.steps[b])
        spikes, values, kinds = [], [], []
        for k in range(arch.n_layers):
            width = arch.groups(k) * arch.lanes
            spikes.append(_padded(trace.spikes[k][:steps, b], width))
            if k < arch.spiking_layers:
                values.append(_padded(trace.membrane[k][:steps, b], width))
                kinds.append("membrane")
            else:
                values.append(_padded(trace.outputs[:steps, b], width))
                kinds.append("output")
        record = ExpectedSample(index=first_index + b, klass=int(result.classes[b]), steps=steps,
                                cycles=int(result.cycles[b]), scores=result.scores[b].copy(),
                                spikes=spikes, values=values, value_kind=kinds, lanes=arch.lanes)
        records.append(record)
    return records
