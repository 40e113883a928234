"""Settings of a benchmark run: the full run and the quick run for tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of every measurement of a run.

    Attributes
    ----------
    config:
        Configuration of the default model; its training, early-stop and network sections apply
        to every model the run trains.
    board_configs:
        One configuration per board to build; each must describe the default model's network.
    kept_fractions:
        Kept fractions of the PRIME sweep.
    noise_levels, noise_repeats:
        Relative standard deviations of the weight read noise, and the noise seeds per level.
    golden_repeats:
        Timed repetitions of each golden-model run; the median is reported.
    torch_samples:
        Test samples the per-sample PyTorch loop runs (None: the whole test split).
    simulators, verify_samples:
        Simulators to time, and the test samples each one runs (simulators that are not
        installed are reported as such).
    training_overrides:
        Replacements for keys of the configuration, ``{section: {key: value}}``.
    curve_alphas, curve_confidences:
        Settings of the confidence rule swept for the trade-off curve; None sweeps the grid that
        ``sw_model.calibrate`` searches.
    """

    config: Path = ROOT / "configs" / "digits_icebreaker.toml"
    board_configs: tuple[Path, ...] = (ROOT / "configs" / "digits_icebreaker.toml",
                                       ROOT / "configs" / "digits_ulx3s.toml")
    kept_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    noise_levels: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)
    noise_repeats: int = 5
    golden_repeats: int = 5
    torch_samples: int | None = None
    simulators: tuple[str, ...] = ("verilator", "icarus")
    verify_samples: dict = field(default_factory=lambda: {"verilator": 100, "icarus": 20})
    training_overrides: dict = field(default_factory=dict)
    curve_alphas: tuple[float, ...] | None = None
    curve_confidences: tuple[float, ...] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = _relative(self.config)
        d["board_configs"] = [_relative(p) for p in self.board_configs]
        return d


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


FULL = BenchSettings()

# Small enough for the test suite: one training epoch on 200 samples, two kept fractions, a
# small confidence grid, no board builds and no simulation.
QUICK = BenchSettings(
    board_configs=(),
    kept_fractions=(0.25, 0.5),
    noise_levels=(0.0, 0.2),
    noise_repeats=1,
    golden_repeats=1,
    torch_samples=40,
    simulators=(),
    verify_samples={},
    training_overrides={"training": {"epochs": 1}, "data": {"limit": 200}},
    curve_alphas=(1.0, 4.0, 16.0),
    curve_confidences=(0.5, 0.9, 0.99),
)
