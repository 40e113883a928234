"""Bit-exact NumPy golden model of the accelerator (docs/architecture.md).

NumPy only: this module must never import torch, so that verification runs without the training
stack. Every function is vectorised over a batch of samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import schedule
from .model import Model, validate_early_stop
from .spec import (
    EXP_LEN,
    SCALE_SHIFT,
    ArchParams,
    EarlyStopParams,
    exp_table,
    leak,
    rate_threshold,
    saturate,
)

__all__ = ["GoldenResult", "Trace", "run", "top_two", "rule_fires", "check_inputs"]

_EXP = exp_table()


@dataclass
class Trace:
    """Per-timestep state of every sample; the leading axis is the timestep ``t``.

    Entries for steps after a sample stopped are still computed (the model runs the whole batch
    to the longest run) and must be ignored past ``GoldenResult.steps``.

    Attributes
    ----------
    inputs: bool (T, B, sizes[0]), the input spikes ``S_0``.
    spikes: per layer k, bool (T, B, sizes[k+1]); for an integrating output layer all False.
    membrane: per spiking layer k, int64 (T, B, sizes[k+1]), the membrane after reset.
    outputs: int64 (T, B, n_out), the output accumulators ``o`` after the step.
    checked: bool (T, B), whether the early-stop unit ran after the step.
    stop: bool (T, B), whether the run stopped after the step.
    """

    inputs: np.ndarray
    spikes: list[np.ndarray]
    membrane: list[np.ndarray]
    outputs: np.ndarray
    checked: np.ndarray
    stop: np.ndarray


@dataclass
class GoldenResult:
    """Per-sample results, each int64 of shape (B,) unless stated.

    ``cycles`` is the cycle count ``C`` of the accelerator schedule; ``bound_cycles`` is the
    event-driven lower bound over the same executed steps; ``scores`` (B, n_out) holds the output
    accumulators at the stopping step; ``synaptic_events`` counts the (spiking input, kept
    synapse) pairs processed, and ``dense_events`` the synapses a dense design would touch.
    """

    classes: np.ndarray
    steps: np.ndarray
    cycles: np.ndarray
    bound_cycles: np.ndarray
    scores: np.ndarray
    synaptic_events: np.ndarray
    dense_events: np.ndarray
    trace: Trace | None = field(default=None, repr=False)


def check_inputs(arch: ArchParams, x: np.ndarray) -> np.ndarray:
    """Return ``x`` as int64 after checking shape and range; raise ValueError naming the sample.

    Rate encoding takes (B, sizes[0]) intensities in 0..2**input_bits-1. Binary encoding takes
    (B, T, sizes[0]) spikes of 0 or 1 with T at least the timestep budget used.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iub":
        raise ValueError(f"inputs must be integers, not dtype {x.dtype}")
    x = x.astype(np.int64)
    if arch.encoding == "rate":
        if x.ndim != 2 or x.shape[1] != arch.n_in:
            raise ValueError(f"inputs must have shape (batch, {arch.n_in}), not {x.shape}")
        high = (1 << arch.input_bits) - 1
    else:
        if x.ndim != 3 or x.shape[2] != arch.n_in:
            raise ValueError(f"binary inputs must have shape (batch, timesteps, {arch.n_in}), "
                             f"not {x.shape}")
        high = 1
    bad = np.argwhere((x < 0) | (x > high))
    if len(bad):
        index = tuple(int(v) for v in bad[0])
        raise ValueError(f"input value {int(x[index])} at index {index} lies outside 0..{high} "
                         f"(input_bits {arch.input_bits}); quantize the data before inference")
    return x


def top_two(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(top1, top2)`` of (B, n_out) accumulators: the lowest index of the maximum, and
    the maximum value over the other classes (section "Readout and ties")."""
    top1 = np.argmax(o, axis=1)  # NumPy returns the first maximum, the lowest index
    rows = np.arange(o.shape[0])
    others = o.copy()
    others[rows, top1] = np.iinfo(np.int64).min
    return top1, others.max(axis=1)


def rule_fires(arch: ArchParams, es: EarlyStopParams, o: np.ndarray, n: int) -> np.ndarray:
    """Return bool (B,): whether the early-stop rule fires on accumulators ``o`` after step n.

    ``min_steps`` and the budget are not applied here (see ``run``).
    """
    top1, top2 = top_two(o)
    rows = np.arange(o.shape[0])
    best = o[rows, top1]
    if es.rule == "off":
        return np.zeros(o.shape[0], dtype=bool)
    if es.rule == "margin":
        return best - top2 >= es.margin
    d = best[:, None] - o
    k = np.minimum((d * es.scale[n - 1]) >> SCALE_SHIFT, EXP_LEN - 1)
    terms = _EXP[k]
    terms[rows, top1] = 0
    return terms.sum(axis=1) <= es.conf_limit


def run(model: Model, x: np.ndarray, es: EarlyStopParams | None = None, *,
        trace: bool = False) -> GoldenResult:
    """Run inference on a batch exactly as the accelerator does.

    Parameters
    ----------
    model:
        The exported network.
    x:
        Integer inputs, (B, sizes[0]) for rate encoding or (B, T, sizes[0]) for binary.
    es:
        Early-stop settings; the model's own when None. Pass a copy with ``rule="off"`` for the
        fixed-budget reference.
    trace:
        Also return the per-timestep state of every layer.
    """
    arch = model.arch
    es = model.early_stop if es is None else es
    validate_early_stop(arch, es)
    x = check_inputs(arch, x)
    batch = x.shape[0]
    if arch.encoding == "binary" and x.shape[1] < es.budget:
        raise ValueError(f"binary inputs hold {x.shape[1]} frames, fewer than the budget {es.budget}")

    masked = [model.weights(k) * model.masks[k].astype(np.int64) for k in range(arch.n_layers)]
    groups = [arch.groups(k) for k in range(arch.n_layers)]
    drain = schedule.drain_cycles(arch)
    spiking = [k < arch.n_layers - 1 or arch.readout == "spike_count" for k in range(arch.n_layers)]

    membrane = [np.zeros((batch, arch.sizes[k + 1]), dtype=np.int64) for k in range(arch.n_layers)]
    o = np.zeros((batch, arch.n_out), dtype=np.int64)
    active = np.ones(batch, dtype=bool)
    classes = np.zeros(batch, dtype=np.int64)
    steps = np.zeros(batch, dtype=np.int64)
    scores = np.zeros((batch, arch.n_out), dtype=np.int64)
    cycles = np.full(batch, schedule.START_CYCLES, dtype=np.int64)
    bound = np.zeros(batch, dtype=np.int64)
    events = np.zeros(batch, dtype=np.int64)
    dense = np.zeros(batch, dtype=np.int64)
    rec: dict[str, list] = {"inputs": [], "outputs": [], "checked": [], "stop": [],
                            "spikes": [[] for _ in masked], "membrane": [[] for _ in masked]}

    for t in range(es.budget):
        n = t + 1
        if arch.encoding == "rate":
            s = x > rate_threshold(t, arch.input_bits)
        else:
            s = x[:, t, :].astype(bool)
        step_cycles = np.full(batch, schedule.ENCODE_CYCLES, dtype=np.int64)
        step_bound = np.zeros(batch, dtype=np.int64)
        if trace:
            rec["inputs"].append(s)
        for k in range(arch.n_layers):
            count = s.sum(axis=1)
            work = count * groups[k] + groups[k]
            step_cycles += work + drain
            step_bound += work
            events[active] += (s.astype(np.int64) @ model.masks[k].astype(np.int64)).sum(axis=1)[active]
            dense[active] += arch.sizes[k] * arch.sizes[k + 1]
            syn = s.astype(np.int64) @ masked[k]
            if spiking[k]:
                v = membrane[k] if t > 0 else np.zeros_like(membrane[k])
                u = saturate(leak(v, arch.leak_shift) + syn, arch.membrane_bits)
                theta = model.thresholds[k]
                fired = u >= theta
                if arch.reset == "subtract":
                    membrane[k] = np.where(fired, u - theta, u)
                else:
                    membrane[k] = np.where(fired, 0, u)
                if k == arch.n_layers - 1:
                    o = o + fired
                s = fired
                if trace:
                    rec["membrane"][k].append(membrane[k].copy())
            else:
                o = o + syn
                s = np.zeros((batch, arch.sizes[k + 1]), dtype=bool)
            if trace:
                rec["spikes"][k].append(s)

        checked = n == es.budget or (es.rule != "off" and n >= es.min_steps)
        stop_now = np.zeros(batch, dtype=bool)
        if checked:
            step_cycles += schedule.decide_cycles(arch, es.rule)
            stop_now = rule_fires(arch, es, o, n) if n < es.budget else np.ones(batch, dtype=bool)
        stop_now &= active
        if trace:
            rec["outputs"].append(o.copy())
            rec["checked"].append(np.full(batch, checked))
            rec["stop"].append(stop_now.copy())

        cycles[active] += step_cycles[active]
        bound[active] += step_bound[active]
        if stop_now.any():
            top1, _ = top_two(o)
            classes[stop_now] = top1[stop_now]
            steps[stop_now] = n
            scores[stop_now] = o[stop_now]
            active &= ~stop_now
        if not active.any() and not trace:
            break

    result = GoldenResult(classes=classes, steps=steps, cycles=cycles, bound_cycles=bound,
                          scores=scores, synaptic_events=events, dense_events=dense)
    if trace:
        n_spiking = [k for k in range(arch.n_layers) if spiking[k]]
        result.trace = Trace(
            inputs=np.array(rec["inputs"]),
            spikes=[np.array(v) for v in rec["spikes"]],
            membrane=[np.array(rec["membrane"][k]) for k in n_spiking],
            outputs=np.array(rec["outputs"]),
            checked=np.array(rec["checked"]),
            stop=np.array(rec["stop"]),
        )
    return result
