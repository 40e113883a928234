"""PNG figures of a benchmark run, drawn from the results dictionary alone.

Each figure carries a footer with the command, the commit and the machine of the run.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or opened

import matplotlib.pyplot as plt  # noqa: E402

from .provenance import describe_commit, describe_machine  # noqa: E402

DPI = 110
FIGSIZE = (7.0, 4.6)


def footer(results: dict) -> str:
    """Return the provenance line printed under every figure."""
    prov = results["provenance"]
    return (f"{prov['command']}  |  commit {describe_commit(prov['git'])}  |  {prov['started']}\n"
            f"{describe_machine(prov['machine'])}")


def _save(fig, results: dict, path: Path) -> Path:
    fig.text(0.01, 0.01, footer(results), fontsize=6.5, color="0.35", va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


BASELINE_STYLES = {
    "weights_quantized": ("trained weights, every synapse kept", "C1", "--"),
    "weights_float": ("trained float weights, every synapse kept", "C4", "-."),
    "random_unpruned": ("random weights, every synapse kept, untrained", "C3", ":"),
}


def kept_fraction(results: dict, path: Path) -> Path:
    """Accuracy against kept fraction: PRIME, the trained-weight baselines, unpruned weights."""
    acc = results["accuracy"]
    rows = acc["study"]["rows"]
    prime = [row for row in rows if row["kind"] == "prime"]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    fractions = [row["keep_fraction"] for row in prime]
    ax.plot(fractions, [100 * row["test_accuracy"] for row in prime], "o-", color="C0",
            label="PRIME: learned mask over fixed random weights, full budget")
    ax.plot(fractions, [100 * row["early_stop_accuracy"] for row in prime], "s--", color="C0",
            alpha=0.5, ms=4, label="PRIME with early stop (margin rule)")
    for row in rows:
        if row["kind"] in BASELINE_STYLES:
            label, color, style = BASELINE_STYLES[row["kind"]]
            ax.axhline(100 * row["test_accuracy"], color=color, ls=style, label=label)
    default = acc["default_kept_fraction"]
    ax.axvline(default, color="0.6", lw=0.8)
    ax.annotate(" default", (default, 2), fontsize=8, color="0.4", ha="left")
    ax.set_xlabel("kept fraction of synapses per layer")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, 1)
    ax.set_title(f"Accuracy against kept fraction ({results['dataset']['name']} test split, "
                 f"{results['dataset']['test']} samples)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="best")
    return _save(fig, results, path)


def early_stop_tradeoff(results: dict, path: Path) -> Path:
    """Accuracy against mean timesteps: the Pareto fronts of both rules and the calibrated
    settings."""
    es = results["early_stop"]
    fronts = {rule: es["curves"][rule]["front"] for rule in ("margin", "confidence")}
    # Show the region where the rules differ: a little past the slowest point plotted.
    slowest = max([c["mean_steps"] for front in fronts.values() for c in front]
                  + [c["mean_steps"] for c in es["calibrated"].values()])
    right = min(es["budget"] + 0.5, 1.25 * slowest + 0.5)

    fig, ax = plt.subplots(figsize=FIGSIZE)
    for rule, color in (("margin", "C0"), ("confidence", "C2")):
        front = fronts[rule]
        # A setting with more steps reaches at least the front's best accuracy, so the front
        # continues flat to the right edge.
        steps = [c["mean_steps"] for c in front] + [right]
        accuracy = [100 * c["accuracy"] for c in front] + [100 * front[-1]["accuracy"]]
        ax.step(steps, accuracy, where="post", color=color,
                label=f"{rule} rule: best settings on the test split")
        chosen = es["calibrated"][rule]
        ax.plot(chosen["mean_steps"], 100 * chosen["accuracy"], "o", color=color, ms=8,
                mec="black", label=f"{rule} rule: calibrated on validation"
                                   + (" (exported)" if chosen["exported"] else ""))

    ax.axhline(100 * es["full_budget"]["accuracy"], color="0.5", ls="--",
               label=f"early stop off ({es['budget']} steps)")
    ax.set_xlabel("mean timesteps per inference")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(0, right)
    low = min(c["accuracy"] for rule in es["curves"].values() for c in rule["front"])
    ax.set_ylim(max(0.0, 100 * low - 5), 100)
    ax.set_title("Early stop: accuracy against timesteps", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, results, path)


def read_noise(results: dict, path: Path) -> Path:
    """Accuracy against the relative standard deviation of weight read noise."""
    acc = results["accuracy"]
    curves = []
    for row in acc["study"]["rows"]:
        if row["kind"] == "prime" and abs(row["keep_fraction"] - acc["default_kept_fraction"]) < 1e-9:
            curves.append((f"PRIME, kept fraction {row['keep_fraction']:g} (default)", row, "C0"))
        elif row["kind"] in ("weights_quantized", "weights_float"):
            label, color, _ = BASELINE_STYLES[row["kind"]]
            curves.append((label, row, color))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    # Read noise is drawn at every synapse read, static noise once per noise seed.
    for label, row, color in curves:
        for mode, style in (("read", "o-"), ("static", "s--")):
            noise = [e for e in row["noise"] if e["mode"] == mode]
            if noise:
                ax.errorbar([100 * e["level"] for e in noise],
                            [100 * e["accuracy"] for e in noise],
                            yerr=[100 * e["std"] for e in noise], fmt=style, capsize=3,
                            color=color, label=f"{label}, {mode} noise")
    ax.set_xlabel("weight noise sigma, relative to the weight (%)")
    ax.set_ylabel("test accuracy at the full budget (%)")
    values = [100 * e["accuracy"] for _, row, _ in curves for e in row["noise"]]
    ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
    ax.set_title(f"Accuracy under weight noise (mean and standard deviation of "
                 f"{acc['study']['study']['noise_repeats']} noise seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, results, path)


def cycles(results: dict, path: Path) -> Path:
    """Cycles per inference against the event-driven bound, sample by sample."""
    c = results["cycles"]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for key, label, color in (("full_budget", "early stop off", "C1"),
                              ("early_stop", "early stop (exported setting)", "C0")):
        ax.plot(c[key]["per_sample_bound"], c[key]["per_sample"], ".", ms=4, color=color,
                label=f"{label}: mean ratio {c[key]['ratio_to_bound']:.3f}")
    top = max(max(c["full_budget"]["per_sample"]), max(c["early_stop"]["per_sample"]))
    ax.plot([0, top], [0, top], color="0.5", lw=0.8, label="cycles = bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("event-driven bound (cycles)")
    ax.set_ylabel("cycles per inference (golden-model schedule)")
    ax.set_title("Cycles per inference against the event-driven bound, per test sample",
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, results, path)


def throughput(results: dict, path: Path) -> Path:
    """Inferences per second: each board at its Fmax against the CPU implementations."""
    labels, values, colors = [], [], []
    for board in results["boards"]:
        if board.get("inferences_per_s_at_fmax"):
            labels.append(f"{board['board']}\nat Fmax {board['fmax_mhz']:.1f} MHz")
            values.append(board["inferences_per_s_at_fmax"])
            colors.append("C0")
    cpu = results["cpu"]
    for key, label in (("golden_batched", "NumPy golden\nbatched, 1 core"),
                       ("torch_per_sample", "PyTorch\nper sample, 1 thread")):
        labels.append(label)
        values.append(cpu[key]["inferences_per_s"])
        colors.append("C1")
    fig, ax = plt.subplots(figsize=FIGSIZE)
    bars = ax.bar(range(len(values)), values, color=colors)
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, value), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_yscale("log")
    # Room below the smallest bar and above the labels of the tallest.
    ax.set_ylim(10 ** math.floor(math.log10(min(values)) - 1), 4 * max(values))
    ax.set_ylabel("inferences per second (with early stop)")
    ax.set_title("Throughput: FPGA (cycle count at Fmax, sample loading excluded) and CPU",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, results, path)


def energy(results: dict, path: Path) -> Path:
    """Estimated energy per inference, split into memory accesses and arithmetic."""
    designs = results["energy"]["designs"]
    names = {"dense_full_budget": "dense,\nfull budget",
             "event_full_budget": "event-driven,\nfull budget",
             "event_early_stop": "event-driven,\nearly stop"}
    fig, ax = plt.subplots(figsize=FIGSIZE)
    bottom = [0.0] * len(names)
    for part, color in (("memory", "C0"), ("adds", "C1"), ("multiplies", "C2")):
        heights = [designs[key]["energy_pj"][part] / 1000 for key in names]
        ax.bar(range(len(names)), heights, bottom=bottom, color=color, label=part)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for i, key in enumerate(names):
        ax.annotate(f"{designs[key]['energy_pj']['total'] / 1000:,.1f} nJ", (i, bottom[i]),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), list(names.values()), fontsize=8)
    ax.set_ylim(0, 1.12 * max(bottom))
    ax.set_ylabel("estimated energy per inference (nJ)")
    ax.set_title("Energy per inference: an estimate from operation counts (45 nm figures)",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, results, path)


FIGURES = {
    "benchmarks_kept_fraction.png": kept_fraction,
    "benchmarks_early_stop.png": early_stop_tradeoff,
    "benchmarks_read_noise.png": read_noise,
    "benchmarks_cycles.png": cycles,
    "benchmarks_throughput.png": throughput,
    "benchmarks_energy.png": energy,
}


def draw_all(results: dict, out_dir: Path) -> dict[str, Path]:
    """Draw every figure into ``out_dir`` and return the paths by file name."""
    return {name: draw(results, Path(out_dir) / name) for name, draw in FIGURES.items()}
