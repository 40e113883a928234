"""TOML configuration of the main job: schema, defaults and validation.

Validation runs before any work starts. Every error is a ``ConfigError`` whose message is one
line naming the key, the value and the accepted values.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boards.catalog import KNOWN_BOARDS
from sw_model.calibrate import DEFAULT_MAX_DROP
from sw_model.model import validate_arch
from sw_model.spec import (
    EARLY_STOP_RULES,
    READOUTS,
    RESET_MODES,
    WEIGHT_DISTRIBUTIONS,
    WEIGHT_SOURCES,
    ArchParams,
)

if TYPE_CHECKING:
    from sw_model.train import TrainConfig

DATASETS = ("digits", "mnist", "nmnist")
SIMULATORS = ("verilator", "icarus")
# Inputs and classes of each dataset, known before any file is read.
DATASET_SHAPES = {"digits": (64, 10), "mnist": (784, 10), "nmnist": (34 * 34, 10)}


class ConfigError(ValueError):
    """An invalid configuration; the message names the key, the value and the fix."""


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default, accepted range or choices, and help text."""

    type: type | tuple[type, ...]
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    auto: bool = False          # the string "auto" is also accepted
    list_of: type | None = None  # a list whose items have this type and range


def _k(*args, **kwargs) -> Key:
    return Key(*args, **kwargs)


# Section -> key -> Key. The top level uses the section "".
SCHEMA: dict[str, dict[str, Key]] = {
    "": {
        "name": _k(str, "", "run name; default: the config file name without .toml"),
        "seed": _k(int, 0, "seed of the data split and of training", 0, 2**31 - 1),
    },
    "data": {
        "dataset": _k(str, "digits", "dataset", choices=DATASETS),
        "path": _k(str, "", "folder with the dataset files (mnist, nmnist); digits ship with scikit-learn"),
        "test_fraction": _k(float, 0.25, "fraction of samples held out for test", 0.05, 0.5),
        "val_fraction": _k(float, 0.15, "fraction of the training samples used for calibration", 0.05, 0.5),
        "input_bits": _k(int, 4, "bits of an input intensity", 1, 8),
        "limit": _k(int, 0, "use at most this many training samples (0: all)", 0, 10**7),
    },
    "network": {
        "hidden": _k(list, [128], "hidden layer sizes", list_of=int, low=1, high=16383),
        "timesteps": _k(int, 16, "timestep budget T the hardware is built for", 1, 255),
        "weight_bits": _k(int, 4, "bits of a signed weight", 2, 8),
        "weight_seed": _k(int, 1, "seed of the random weights", 0, 2**32 - 1),
        "weight_dist": _k(str, "gaussian", "distribution of the random weights", choices=WEIGHT_DISTRIBUTIONS),
        "weight_sigma": _k(float, 2.5, "gaussian: standard deviation in weight LSBs", 0.1, 64.0),
        "lognormal_sigma": _k(float, 0.5, "lognormal_pair: sigma of the log-conductance", 0.01, 4.0),
        "lognormal_median": _k(float, 2.0, "lognormal_pair: median conductance in weight LSBs", 0.1, 128.0),
        "membrane_bits": _k(int, 12, "bits of a signed membrane potential", 4, 24),
        "leak_shift": _k(int, 4, "leak as v - (v >> leak_shift); 0: no leak", 0, 23),
        "reset": _k(str, "subtract", "membrane reset after a spike", choices=RESET_MODES),
        "readout": _k(str, "integrate", "output layer", choices=READOUTS),
        "thresholds": _k(list, [], "threshold per spiking layer; empty: the training default",
                         list_of=int, low=1, high=2**23 - 1),
    },
    "training": {
        # None leaves the value to sw_model.train.TrainConfig, whose defaults are tuned there.
        "keep_fraction": _k(float, None, "fraction of synapses kept per layer", 0.01, 1.0),
        "epochs": _k(int, None, "training epochs", 1, 10000),
        "batch_size": _k(int, None, "samples per batch", 1, 65536),
        "learning_rate": _k(float, None, "learning rate of the scores", 1e-6, 100.0),
        "options": _k(dict, {}, "further keyword arguments of sw_model.train.TrainConfig"),
    },
    "early_stop": {
        "rule": _k(str, "margin", "early-stop rule", choices=EARLY_STOP_RULES),
        "min_steps": _k(int, "auto", "no stop before this many timesteps; auto: calibrate", 1, 255,
                        auto=True),
        "margin": _k(int, "auto", "margin rule threshold; auto: calibrate", 0, 2**31 - 1, auto=True),
        "confidence": _k(float, "auto", "confidence rule probability; auto: calibrate", 0.01, 0.9999,
                         auto=True),
        "alpha": _k(float, "auto", "confidence rule softmax temperature; auto: calibrate", 0.05, 1000.0,
                    auto=True),
        "max_accuracy_drop": _k(float, DEFAULT_MAX_DROP, "calibration: share of early decisions allowed "
                                "to differ from the full budget (0.001 = 0.1 points)", 0.0, 1.0),
    },
    "hardware": {
        "lanes": _k(int, 8, "neurons updated per cycle", 1, 1024),
        "weight_source": _k(str, "rom", "weights in block RAM or hashed on the fly", choices=WEIGHT_SOURCES),
    },
    "board": {
        "name": _k(str, "icebreaker", "board to build for", choices=tuple(KNOWN_BOARDS)),
        "clock_mhz": _k(float, 0.0, "target clock in MHz; 0: the board's default", 0.0, 1000.0),
        "baud": _k(int, 115200, "UART baud rate of the host link", 1200, 12_000_000),
        "allow_timing_failure": _k(bool, False, "finish even if Fmax misses the target clock"),
        "allow_overfull": _k(bool, False, "report instead of failing when the design does not fit"),
    },
    "verify": {
        "samples": _k(int, 32, "test samples run on the RTL and compared with the golden model", 1, 100000),
        "simulator": _k(str, "verilator", "cocotb simulator", choices=SIMULATORS),
    },
}


@dataclass
class Config:
    """A validated configuration: ``values[section][key]`` with defaults filled in."""

    name: str
    path: Path
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    @property
    def seed(self) -> int:
        return self.values[""]["seed"]

    def arch(self, n_in: int, n_out: int) -> ArchParams:
        """Return the architecture for a dataset with ``n_in`` inputs and ``n_out`` classes."""
        net = self.values["network"]
        return ArchParams(
            sizes=(n_in, *net["hidden"], n_out),
            input_bits=self.values["data"]["input_bits"],
            timesteps=net["timesteps"],
            weight_bits=net["weight_bits"],
            weight_seed=net["weight_seed"],
            weight_dist=net["weight_dist"],
            weight_sigma=net["weight_sigma"],
            lognormal_sigma=net["lognormal_sigma"],
            lognormal_median=net["lognormal_median"],
            membrane_bits=net["membrane_bits"],
            leak_shift=net["leak_shift"],
            reset=net["reset"],
            readout=net["readout"],
            lanes=self.values["hardware"]["lanes"],
            weight_source=self.values["hardware"]["weight_source"],
            encoding="binary" if self.values["data"]["dataset"] == "nmnist" else "rate",
        )

    def train_config(self) -> TrainConfig:
        """Return the ``sw_model.train.TrainConfig`` of the [training] section.

        Keys left unset (None) keep the defaults of ``TrainConfig``, ``options`` fills its
        other fields, and [network] thresholds, when given, replace the default threshold rule.
        Raises ConfigError when ``options`` names a field ``TrainConfig`` does not have.
        """
        # sw_model.train imports torch, which loading or validating a configuration never needs.
        from sw_model.train import TrainConfig  # noqa: F811

        training = self.values["training"]
        options = {key: training[key]
                   for key in ("keep_fraction", "epochs", "batch_size", "learning_rate")
                   if training[key] is not None}
        options.update(training["options"])
        thresholds = self.values["network"]["thresholds"]
        if thresholds:
            options["thresholds"] = tuple(thresholds)
        try:
            return TrainConfig(**options)
        except TypeError as error:
            raise ConfigError(f"[training] options: {error}. See sw_model.train.TrainConfig for "
                              f"the accepted names") from None

    def canonical(self, *sections: str) -> str:
        """Return the named sections (all when none) as canonical JSON, for cache keys."""
        chosen = sections or tuple(self.values)
        return json.dumps({s: self.values[s] for s in chosen}, sort_keys=True)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               list: "a list", dict: "a table"}


def _bound(value: float) -> str:
    """Format a range bound: integers in full, floats as ``%g``."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def describe_key(key: Key) -> str:
    """Return the values ``key`` accepts, in words, for error messages and help."""
    if key.choices:
        return "one of " + ", ".join(repr(c) for c in key.choices)
    if key.list_of is not None:
        return f"a list of integers in {_bound(key.low)}..{_bound(key.high)}"
    if key.low is not None:
        text = f"{_TYPE_NAMES[key.type]} in {_bound(key.low)}..{_bound(key.high)}"
        return text + ' or "auto"' if key.auto else text
    return _TYPE_NAMES[key.type]


def _check_value(where: str, key: Key, value: Any) -> Any:
    def fail() -> ConfigError:
        return ConfigError(f"{where} = {value!r} is invalid: expected {describe_key(key)}")

    if key.auto and value == "auto":
        return value
    if key.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if key.type in (int, float) and isinstance(value, bool):
        raise fail()
    if not isinstance(value, key.type):
        raise fail()
    if key.choices is not None and value not in key.choices:
        raise fail()
    if key.list_of is not None:
        for item in value:
            if not isinstance(item, key.list_of) or isinstance(item, bool):
                raise fail()
            if not key.low <= item <= key.high:
                raise fail()
    elif key.low is not None and not key.low <= value <= key.high:
        raise fail()
    return value


def parse_config(data: dict, path: Path) -> Config:
    """Validate a parsed TOML document against ``SCHEMA`` and return the ``Config``."""
    values: dict[str, dict[str, Any]] = {s: {} for s in SCHEMA}
    for name, item in data.items():
        if isinstance(item, dict) and name in SCHEMA and name != "":
            for key, value in item.items():
                if key not in SCHEMA[name]:
                    raise ConfigError(f"unknown key [{name}] {key!r}; known keys: "
                                      f"{', '.join(SCHEMA[name])}")
                values[name][key] = _check_value(f"[{name}] {key}", SCHEMA[name][key], value)
        elif name in SCHEMA[""]:
            values[""][name] = _check_value(name, SCHEMA[""][name], item)
        else:
            known = [k for k in SCHEMA if k] + list(SCHEMA[""])
            raise ConfigError(f"unknown key {name!r}; known top-level keys and sections: {', '.join(known)}")
    for section, keys in SCHEMA.items():
        for key, spec in keys.items():
            values[section].setdefault(key, spec.default)
    name = values[""]["name"] or path.stem
    values[""]["name"] = name
    config = Config(name=name, path=path, values=values)
    _check_relations(config)
    return config


def _check_relations(config: Config) -> None:
    """Check constraints between keys that one key's range cannot express."""
    data, net, es = config["data"], config["network"], config["early_stop"]
    if data["dataset"] in ("mnist", "nmnist") and not data["path"]:
        raise ConfigError(f"[data] path is empty but dataset {data['dataset']!r} reads files; "
                          f"set [data] path to the folder that holds them")
    if data["dataset"] in ("mnist", "nmnist") and not Path(data["path"]).is_dir():
        raise ConfigError(f"[data] path = {data['path']!r} is not a folder (relative paths start "
                          f"at the working directory); set it to the folder with the "
                          f"{data['dataset']} files")
    if not net["hidden"]:
        raise ConfigError("[network] hidden = [] is invalid: at least one hidden layer is required")
    if es["min_steps"] != "auto" and es["min_steps"] > net["timesteps"]:
        raise ConfigError(f"[early_stop] min_steps = {es['min_steps']} exceeds [network] timesteps = "
                          f"{net['timesteps']}; lower min_steps")
    spiking = len(net["hidden"]) + (1 if net["readout"] == "spike_count" else 0)
    if net["thresholds"] and len(net["thresholds"]) != spiking:
        raise ConfigError(f"[network] thresholds lists {len(net['thresholds'])} values but the "
                          f"network has {spiking} spiking layer(s); give one threshold per hidden "
                          f"layer, plus one for the output layer when readout = 'spike_count'")
    theta_max = (1 << (net["membrane_bits"] - 1)) - 1
    for theta in net["thresholds"]:
        if theta > theta_max:
            raise ConfigError(f"[network] thresholds value {theta} does not fit membrane_bits = "
                              f"{net['membrane_bits']} (maximum {theta_max}); raise membrane_bits or "
                              f"lower the threshold")
    if net["leak_shift"] >= net["membrane_bits"]:
        raise ConfigError(f"[network] leak_shift = {net['leak_shift']} must be below membrane_bits = "
                          f"{net['membrane_bits']}")
    lanes = config["hardware"]["lanes"]
    if lanes > min(net["hidden"]):
        raise ConfigError(f"[hardware] lanes = {lanes} exceeds the smallest hidden layer "
                          f"({min(net['hidden'])} neurons); use lanes <= {min(net['hidden'])}")
    n_in, n_out = DATASET_SHAPES[data["dataset"]]
    try:
        validate_arch(config.arch(n_in=n_in, n_out=n_out))
    except ValueError as error:
        raise ConfigError(f"[network]/[hardware]: {error}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None
    return parse_config(data, path)
