"""An estimate of the energy per inference from operation counts and energies per operation.

This is an estimate, not a measurement: it counts the memory accesses and integer operations
that the accelerator's schedule (docs/architecture.md, "Accelerator schedule and cycle count")
performs per inference and multiplies them by energies per operation of a 45 nm process. It
leaves out static power, clocking, control logic and the FPGA's own overheads.

Energies per operation come from M. Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014, 45 nm at 0.9 V, as tabulated in Table 3 of
https://pmc.ncbi.nlm.nih.gov/articles/PMC8934428/table/T3/. They are: int32 add 0.1 pJ, int32
multiply 3.1 pJ, float32 add 0.9 pJ, float32 multiply 3.7 pJ, and 10 pJ per 64-bit access of an
8 kB cache. That table's source takes the last as 5 pJ per 32-bit load, and this model charges
5 pJ per 32-bit word read or written.

Counting model, per inference (``G_k`` groups of ``lanes`` neurons in layer ``k``):

- integrate, per (input, group) pair processed: the weight word and the accumulator word are
  read and the accumulator word written. The event-driven design also reads the mask word.
  One add is counted per synapse whose input spiked and which is kept (event-driven), or per
  synapse (dense);
- update, per group and step: the accumulator word is read and the neuron state word read and
  written; three adds per LIF neuron (leak, integrate, reset) or one per output accumulator;
- early-stop decision, per checked step: one compare (an add) per class for the margin rule,
  and one multiply, two adds and one table read per class for the confidence rule.

Words are 32 bits: a memory row of ``lanes`` values of ``b`` bits costs ``ceil(lanes * b / 32)``
word accesses. The event-driven design processes only inputs that spiked and stops early; the
dense design processes every input of every step up to the full budget, with weights stored
already masked (pruned weights are zero, so it reads no mask).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from sw_model import golden
from sw_model.model import Model

SOURCE = ("M. Horowitz, ISSCC 2014 (45 nm, 0.9 V), as tabulated in "
          "https://pmc.ncbi.nlm.nih.gov/articles/PMC8934428/table/T3/")

# Energies per operation in pJ; see the module docstring for the source.
ENERGY_PJ = {
    "int32 add": 0.1,
    "int32 multiply": 3.1,
    "float32 add": 0.9,
    "float32 multiply": 3.7,
    "64-bit access, 8 kB cache": 10.0,
    "32-bit word access": 5.0,
}
WORD_BITS = 32


def words(lanes: int, bits: int) -> int:
    """Return the 32-bit word accesses of one memory row of ``lanes`` values of ``bits`` bits."""
    return math.ceil(lanes * bits / WORD_BITS)


def _spiking(model: Model, layer: int) -> bool:
    arch = model.arch
    return layer < arch.n_layers - 1 or arch.readout == "spike_count"


def _layer_rows(model: Model, layer: int) -> dict:
    arch = model.arch
    state_bits = arch.membrane_bits if _spiking(model, layer) else arch.output_bits
    return {"weight": words(arch.lanes, arch.weight_bits), "mask": words(arch.lanes, 1),
            "accumulator": words(arch.lanes, arch.syn_bits(layer)),
            "state": words(arch.lanes, state_bits)}


def _decision_ops(model: Model, rule: str) -> dict:
    n_out = model.arch.n_out
    if rule == "confidence":
        return {"adds": 2 * n_out, "multiplies": n_out, "word_accesses": n_out}
    return {"adds": n_out, "multiplies": 0, "word_accesses": 0}


def count_operations(model: Model, x: np.ndarray, es, *, dense: bool) -> dict:
    """Return the mean operation counts per inference over the samples ``x``.

    ``es`` gives the early-stop settings; a dense count ignores spikes and the mask and always
    runs ``es.budget`` steps (pass ``rule="off"``). The result maps ``word_accesses``, ``adds``
    and ``multiplies`` to means per inference, with ``steps`` and ``synaptic_events`` for
    reference.
    """
    arch = model.arch
    result = golden.run(model, x, es, trace=True)
    steps = result.steps.astype(np.float64)
    # Spiking inputs per layer per sample over the steps that sample executed.
    executed = np.arange(es.budget)[:, None] < result.steps[None, :]  # (T, B)
    layer_inputs = [result.trace.inputs] + result.trace.spikes[:-1]
    counts = {"word_accesses": np.zeros(len(x)), "adds": np.zeros(len(x)),
              "multiplies": np.zeros(len(x))}
    for k in range(arch.n_layers):
        rows = _layer_rows(model, k)
        groups = arch.groups(k)
        if dense:
            pairs = steps * arch.sizes[k] * groups
            per_pair = rows["weight"] + 2 * rows["accumulator"]
            counts["adds"] += steps * arch.sizes[k] * arch.sizes[k + 1]
        else:
            spikes = (layer_inputs[k].sum(axis=2) * executed).sum(axis=0)
            pairs = spikes * groups
            per_pair = rows["weight"] + rows["mask"] + 2 * rows["accumulator"]
        counts["word_accesses"] += pairs * per_pair
        counts["word_accesses"] += steps * groups * (rows["accumulator"] + 2 * rows["state"])
        counts["adds"] += steps * arch.sizes[k + 1] * (3 if _spiking(model, k) else 1)
    if not dense:
        counts["adds"] += result.synaptic_events
    checked = steps - es.min_steps + 1 if es.rule != "off" else np.ones(len(x))
    for name, per_check in _decision_ops(model, es.rule).items():
        counts[name] += checked * per_check
    means = {name: float(values.mean()) for name, values in counts.items()}
    means["steps"] = float(steps.mean())
    means["synaptic_events"] = float(result.synaptic_events.mean())
    return means


def energy_pj(counts: dict) -> dict:
    """Return the estimated energy in pJ of operation counts, by kind and in total."""
    parts = {
        "memory": counts["word_accesses"] * ENERGY_PJ["32-bit word access"],
        "adds": counts["adds"] * ENERGY_PJ["int32 add"],
        "multiplies": counts["multiplies"] * ENERGY_PJ["int32 multiply"],
    }
    parts["total"] = sum(parts.values())
    return parts


def estimate(model: Model, x: np.ndarray) -> dict:
    """Estimate the energy per inference of three ways to run ``model`` on ``x``.

    ``dense_full_budget``: every synapse of every step up to the budget;
    ``event_full_budget``: the accelerator's event-driven schedule with early stop off;
    ``event_early_stop``: the same with the model's early stop, as the accelerator runs it.
    """
    es = model.early_stop
    full = replace(es, rule="off")
    designs = {
        "dense_full_budget": count_operations(model, x, full, dense=True),
        "event_full_budget": count_operations(model, x, full, dense=False),
        "event_early_stop": count_operations(model, x, es, dense=False),
    }
    out = {name: {"operations": counts, "energy_pj": energy_pj(counts)}
           for name, counts in designs.items()}
    dense_total = out["dense_full_budget"]["energy_pj"]["total"]
    for entry in out.values():
        entry["fraction_of_dense"] = entry["energy_pj"]["total"] / dense_total
    return {"designs": out, "energy_per_operation_pj": dict(ENERGY_PJ), "source": SOURCE,
            "word_bits": WORD_BITS}
