"""Inference speed on this machine's CPU: the NumPy golden model on a batch, and a
straightforward PyTorch loop that runs one sample at a time.

Both run on one core. NumPy's thread pools are limited to one thread: the golden model's integer
matrix products do not use BLAS, and the limit makes that explicit. torch is set to one thread,
because per-sample matrices this small only lose time to thread hand-offs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from sw_model import golden
from sw_model.model import Model
from sw_model.spec import EXP_LEN, SCALE_SHIFT, EarlyStopParams, exp_table, rate_threshold


def time_golden(model: Model, x: np.ndarray, es: EarlyStopParams, repeats: int) -> dict:
    """Time ``golden.run`` on the whole batch ``x`` on one core; return the median and all runs."""
    runs = []
    with threadpool_limits(limits=1):
        golden.run(model, x[:2], es)  # warm-up: first-call costs of NumPy
        for _ in range(repeats):
            started = time.perf_counter()
            golden.run(model, x, es)
            runs.append(time.perf_counter() - started)
    median = statistics.median(runs)
    return {"samples": int(len(x)), "seconds": median, "runs": runs,
            "inferences_per_s": len(x) / median}


class TorchPerSample:
    """One-sample-at-a-time inference in PyTorch, with the early stop of the accelerator.

    This is the loop a user would write without the golden model: for each timestep the input
    spikes, one vector-matrix product per layer, the LIF update and the early-stop check, and a
    ``break`` when the rule fires. It follows docs/architecture.md (rate encoding only) and is
    checked against the golden model on every sample it runs.
    """

    def __init__(self, model: Model, es: EarlyStopParams):
        arch = model.arch
        if arch.encoding != "rate":
            raise ValueError(f"the per-sample PyTorch loop supports rate encoding only, not "
                             f"{arch.encoding!r}")
        self.arch = arch
        self.es = es
        # float32 represents every membrane, sum and accumulator of these widths exactly.
        self.weights = [torch.from_numpy((model.weights(k) * model.masks[k]).astype(np.float32))
                        for k in range(arch.n_layers)]
        self.thresholds = [float(theta) for theta in model.thresholds]
        self.spike_levels = [rate_threshold(t, arch.input_bits) for t in range(es.budget)]
        self.exp = torch.from_numpy(exp_table())
        self.divisor = float(1 << arch.leak_shift)

    def _fires(self, o: torch.Tensor, n: int) -> bool:
        es = self.es
        top1 = int(torch.argmax(o))  # the first maximum: the lowest index, as the spec says
        others = o.clone()
        others[top1] = -float("inf")
        if es.rule == "margin":
            return bool(o[top1] - others.max() >= es.margin)
        d = (o[top1] - o).to(torch.int64)
        k = torch.clamp((d * es.scale[n - 1]) >> SCALE_SHIFT, max=EXP_LEN - 1)
        terms = self.exp[k]
        terms[top1] = 0
        return bool(terms.sum() <= es.conf_limit)

    @torch.no_grad()
    def infer(self, x: np.ndarray) -> tuple[int, int]:
        """Return ``(class, steps)`` of one sample, int (n_in,)."""
        arch, es = self.arch, self.es
        sample = torch.from_numpy(np.asarray(x, dtype=np.int64))
        membrane = [torch.zeros(arch.sizes[k + 1]) for k in range(arch.n_layers)]
        o = torch.zeros(arch.n_out)
        last = arch.n_layers - 1
        for t in range(es.budget):
            s = (sample > self.spike_levels[t]).to(torch.float32)
            for k, w in enumerate(self.weights):
                syn = s @ w
                if k == last and arch.readout == "integrate":
                    o += syn
                    continue
                v = membrane[k]
                if arch.leak_shift:
                    v = v - torch.floor(v / self.divisor)
                u = torch.clamp(v + syn, arch.membrane_min, arch.membrane_max)
                fired = u >= self.thresholds[k]
                if arch.reset == "subtract":
                    membrane[k] = torch.where(fired, u - self.thresholds[k], u)
                else:
                    membrane[k] = torch.where(fired, torch.zeros_like(u), u)
                s = fired.to(torch.float32)
                if k == last:
                    o += s
            n = t + 1
            if n == es.budget:
                break
            if es.rule != "off" and n >= es.min_steps and self._fires(o, n):
                break
        return int(torch.argmax(o)), n


def time_torch_per_sample(model: Model, x: np.ndarray, es: EarlyStopParams) -> dict:
    """Time the per-sample PyTorch loop over ``x`` on one thread; check it against the golden
    model, sample by sample, in class and steps.

    Raises RuntimeError when a sample disagrees, since the timing would then be of another
    computation.
    """
    loop = TorchPerSample(model, es)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loop.infer(x[0])  # warm-up: first-call costs of torch
        started = time.perf_counter()
        outcomes = [loop.infer(sample) for sample in x]
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    expected = golden.run(model, x, es)
    classes = np.array([c for c, _ in outcomes])
    steps = np.array([n for _, n in outcomes])
    disagree = np.flatnonzero((classes != expected.classes) | (steps != expected.steps))
    if len(disagree):
        i = int(disagree[0])
        raise RuntimeError(f"the per-sample PyTorch loop disagrees with the golden model on "
                           f"{len(disagree)} of {len(x)} samples; first: sample {i}, class "
                           f"{classes[i]} in {steps[i]} steps against {expected.classes[i]} in "
                           f"{expected.steps[i]}")
    return {"samples": int(len(x)), "seconds": seconds, "inferences_per_s": len(x) / seconds,
            "agrees_with_golden": int(len(x))}


def cpu_speeds(model: Model, x: np.ndarray, *, golden_repeats: int,
               torch_samples: int | None) -> dict:
    """Measure the golden model (batched, with early stop and at the full budget) and the
    per-sample PyTorch loop (with early stop) on ``x``."""
    es = model.early_stop
    full = replace(es, rule="off")
    subset = x if torch_samples is None else x[:torch_samples]
    return {
        "golden_batched": time_golden(model, x, es, golden_repeats),
        "golden_batched_full_budget": time_golden(model, x, full, golden_repeats),
        "torch_per_sample": time_torch_per_sample(model, subset, es),
        "torch_threads": 1,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
    }
