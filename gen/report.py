"""``report.json`` (the contract CI reads) and ``report.md`` (the summary people read).

The keys are documented in docs/report.md. Keys are only ever added, never renamed; a value whose
stage did not run is null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import Pipeline

REPORT_SCHEMA_VERSION = 1


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def build_report(pipeline: "Pipeline") -> dict[str, Any]:
    """Collect the stage results of a pipeline into the report dictionary."""
    from .pipeline import STAGES, get, tool_versions

    r = pipeline.results
    cycles_mean = get(r, "golden", "cycles_mean")
    bound_mean = get(r, "golden", "cycles_bound_mean")
    fmax = get(r, "build", "fmax_mhz")
    budget = get(r, "golden", "timesteps_budget")
    steps_mean = get(r, "golden", "timesteps_mean")
    ran = [s for s in STAGES if s in r]
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "config": {"name": pipeline.config.name, "path": str(pipeline.config.path)},
        "complete": "build" in r,
        "stages_run": ran,
        "dataset": {
            "name": get(r, "data", "dataset"),
            "train": get(r, "data", "train"),
            "val": get(r, "data", "val"),
            "test": get(r, "data", "test"),
        },
        "accuracy": {
            "float": get(r, "train", "accuracy_float"),
            "golden": get(r, "golden", "accuracy"),
            "golden_full_budget": get(r, "golden", "accuracy_full_budget"),
            "rtl": get(r, "verify", "accuracy"),
        },
        "rtl": {
            "samples_checked": get(r, "verify", "samples_checked"),
            "mismatches": get(r, "verify", "mismatches"),
            "trace_mismatches": get(r, "verify", "trace_mismatches"),
            "simulator": get(r, "verify", "simulator"),
        },
        "timesteps": {
            "mean": steps_mean,
            "max": get(r, "golden", "timesteps_max"),
            "budget": budget,
            "saving": None if steps_mean is None else 1.0 - steps_mean / budget,
        },
        "early_stop": get(r, "export", "early_stop"),
        "cycles": {
            "mean_per_inference": cycles_mean,
            "mean_bound_per_inference": bound_mean,
            "ratio_to_bound": _ratio(cycles_mean, bound_mean),
            "mean_full_budget": get(r, "golden", "cycles_mean_full_budget"),
        },
        "synaptic_events": {
            "mean": get(r, "golden", "synaptic_events_mean"),
            "mean_full_budget": get(r, "golden", "synaptic_events_mean_full_budget"),
        },
        "board": get(r, "build", "board"),
        "resources": get(r, "build", "resources"),
        "fmax_mhz": fmax,
        "target_clock_mhz": get(r, "build", "target_clock_mhz"),
        "throughput": {
            "inferences_per_s": None if fmax is None or not cycles_mean else fmax * 1e6 / cycles_mean,
        },
        "files": {
            "model": get(r, "export", "model"),
            "verilog": get(r, "verilog", "verilog"),
            "bitstream": get(r, "build", "bitstream"),
        },
        "stages": dict(pipeline.seconds),
        "stages_cached": dict(pipeline.cached),
        "versions": {**tool_versions(), **(get(r, "build", "tool_versions") or {})},
    }


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "n/a"
    return format(value, spec)


def render_markdown(report: dict[str, Any]) -> str:
    """Return the report as a short Markdown page."""
    acc, ts, cyc = report["accuracy"], report["timesteps"], report["cycles"]
    lines = [
        f"# Report: {report['config']['name']}",
        "",
        f"Stages run: {', '.join(report['stages_run'])}.",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| accuracy, float training model | {_fmt(acc['float'], '.4f')} |",
        f"| accuracy, golden model with early stop | {_fmt(acc['golden'], '.4f')} |",
        f"| accuracy, golden model at the full budget | {_fmt(acc['golden_full_budget'], '.4f')} |",
        f"| accuracy, RTL on the checked samples | {_fmt(acc['rtl'], '.4f')} |",
        f"| RTL samples checked / mismatches | {_fmt(report['rtl']['samples_checked'])} / "
        f"{_fmt(report['rtl']['mismatches'])} |",
        f"| timesteps mean / max / budget | {_fmt(ts['mean'], '.2f')} / {_fmt(ts['max'])} / "
        f"{_fmt(ts['budget'])} |",
        f"| timesteps saved by early stop | {_fmt(None if ts['saving'] is None else 100 * ts['saving'], '.1f')} % |",
        f"| cycles per inference (mean) | {_fmt(cyc['mean_per_inference'], '.1f')} |",
        f"| event-driven bound (mean) | {_fmt(cyc['mean_bound_per_inference'], '.1f')} |",
        f"| ratio to the bound | {_fmt(cyc['ratio_to_bound'], '.3f')} |",
        f"| board | {_fmt(report['board'])} |",
        f"| Fmax / target clock | {_fmt(report['fmax_mhz'], '.1f')} / "
        f"{_fmt(report['target_clock_mhz'], '.1f')} MHz |",
        f"| throughput | {_fmt(report['throughput']['inferences_per_s'], ',.0f')} inferences/s |",
    ]
    resources = report.get("resources") or {}
    if resources:
        lines += ["", "| resource | used | available |", "| --- | --- | --- |"]
        for name, use in resources.items():
            lines.append(f"| {name} | {use.get('used')} | {use.get('available')} |")
    lines += ["", "| stage | seconds | cached |", "| --- | --- | --- |"]
    for stage, seconds in report["stages"].items():
        lines.append(f"| {stage} | {seconds:.1f} | {'yes' if report['stages_cached'].get(stage) else 'no'} |")
    lines.append("")
    return "\n".join(lines)
