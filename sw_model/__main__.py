"""Command line of the software model: train a PRIME model, or run the baseline study.

``python -m sw_model train --out DIR`` trains the default network on the digits, calibrates
early stop on the validation split, writes ``DIR/model.npz`` and ``DIR/train.json`` and prints
the measured numbers. ``python -m sw_model study --out DIR`` writes ``DIR/study.json`` and
``DIR/study.md`` (see :mod:`sw_model.studies`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from .calibrate import (DEFAULT_MAX_DROP, calibrate_confidence, calibrate_margin,
                        simulate_early_stop)
from .data import DatasetFileError, load_dataset
from .model import save_model
from .spec import ArchParams
from .torch_model import FixedNet
from .train import TrainConfig, build_model, train_topology

log = logging.getLogger("sw_model")

DEFAULT_HIDDEN = 128
DEFAULT_TRAIN_CONFIG = TrainConfig()
# ArchParams fields set on the command line: name, type, help text.
NETWORK_OPTIONS = (
    ("input_bits", int, "bits of an input intensity"),
    ("timesteps", int, "timestep budget T"),
    ("weight_bits", int, "bits of a signed weight"),
    ("weight_seed", int, "seed of the random weights"),
    ("weight_sigma", float, "standard deviation of the Gaussian weights, in weight LSBs"),
    ("membrane_bits", int, "bits of a signed membrane potential"),
    ("leak_shift", int, "leak as v - (v >> leak_shift); 0 turns the leak off"),
)


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sw_model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train, calibrate and export one PRIME model",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    study = commands.add_parser("study", help="run the baselines, kept-fraction and noise study",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for sub in (train, study):
        output = sub.add_argument_group("output")
        output.add_argument("--out", type=Path, required=True, help="folder for the results")
        output.add_argument("-v", "--verbose", action="store_true", help="log DEBUG messages")

        data = sub.add_argument_group("data")
        data.add_argument("--dataset", default="digits", choices=("digits", "mnist", "nmnist"),
                          help="dataset")
        data.add_argument("--path", default=None,
                          help="folder of the MNIST or N-MNIST files (never downloaded)")
        data.add_argument("--seed", type=int, default=0, help="seed of the data split and training")

        network = sub.add_argument_group("network")
        network.add_argument("--hidden", type=int, nargs="+", default=[DEFAULT_HIDDEN],
                             help="hidden layer sizes")
        defaults = ArchParams()
        for name, kind, text in NETWORK_OPTIONS:
            network.add_argument("--" + name.replace("_", "-"), type=kind,
                                 default=getattr(defaults, name), help=text)
        network.add_argument("--readout", default=defaults.readout,
                             choices=("integrate", "spike_count"), help="output layer")
        network.add_argument("--thresholds", type=int, nargs="+", default=None,
                             help="threshold per spiking layer (default: the training rule)")

        training = sub.add_argument_group("training")
        training.add_argument("--keep-fraction", type=float,
                              default=DEFAULT_TRAIN_CONFIG.keep_fraction,
                              help="fraction of synapses kept per layer")
        training.add_argument("--epochs", type=int, default=DEFAULT_TRAIN_CONFIG.epochs,
                              help="training epochs")
        training.add_argument("--learning-rate", type=float,
                              default=DEFAULT_TRAIN_CONFIG.learning_rate, help="learning rate")
        training.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP,
                              help="early-stop calibration: allowed fraction of classes that "
                                   "change against the full budget, on the validation and "
                                   "training splits (0.005 = 0.5 points)")
    train.add_argument("--rule", default="margin", choices=("margin", "confidence"),
                       help="early-stop rule to calibrate")
    study.add_argument("--keep-fractions", type=float, nargs="+",
                       default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                       help="kept fractions of the PRIME runs")
    study.add_argument("--noise-levels", type=float, nargs="+",
                       default=[0.0, 0.02, 0.05, 0.1, 0.2],
                       help="relative standard deviations of the weight read noise")
    study.add_argument("--noise-repeats", type=int, default=5,
                       help="noise seeds per level")
    study.add_argument("--no-baselines", action="store_true",
                       help="skip the trained-weight and unpruned baselines")
    return parser


def _arch(args: argparse.Namespace, n_in: int, n_out: int, encoding: str) -> ArchParams:
    return ArchParams(sizes=(n_in, *args.hidden, n_out), input_bits=args.input_bits,
                      timesteps=args.timesteps, weight_bits=args.weight_bits,
                      weight_seed=args.weight_seed, weight_sigma=args.weight_sigma,
                      membrane_bits=args.membrane_bits, leak_shift=args.leak_shift,
                      readout=args.readout, encoding=encoding, lanes=min(8, *args.hidden))


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return replace(DEFAULT_TRAIN_CONFIG, keep_fraction=args.keep_fraction, epochs=args.epochs,
                   learning_rate=args.learning_rate,
                   thresholds=tuple(args.thresholds) if args.thresholds else None)


def _command_train(args: argparse.Namespace) -> dict:
    data = load_dataset(args.dataset, input_bits=args.input_bits, seed=args.seed, path=args.path,
                        timesteps=args.timesteps)
    arch = _arch(args, data.n_in, data.n_classes, data.encoding)
    cfg = _train_config(args)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train_topology(arch, data, cfg, seed=args.seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    model = build_model(arch, result.masks, result.thresholds)
    net = FixedNet.from_model(model)
    val_outputs = net.infer(data.x_val)
    test_outputs = net.infer(data.x_test)
    calibrate = calibrate_margin if args.rule == "margin" else calibrate_confidence
    # The training split joins as unlabeled samples; see the sw_model.calibrate docstring.
    calibration = calibrate(arch, val_outputs, data.y_val, max_drop=args.max_drop,
                            unlabeled=net.infer(data.x_train))
    classes, steps = simulate_early_stop(arch, calibration.early_stop, test_outputs)
    test_full = float((test_outputs[-1].argmax(axis=1) == data.y_test).mean())
    summary = {
        "dataset": data.summary(),
        "arch": arch.to_dict(),
        "train_config": cfg.to_dict(),
        "thresholds": result.thresholds,
        "train_seconds": wall,
        "train_cpu_seconds": cpu,
        "val_accuracy": result.val_accuracy,
        "test_accuracy": test_full,
        "early_stop": {k: v for k, v in calibration.early_stop.to_dict().items() if k != "scale"},
        "early_stop_test_accuracy": float((classes == data.y_test).mean()),
        "early_stop_test_steps": float(steps.mean()),
        "early_stop_saved": float(1.0 - steps.mean() / arch.timesteps),
        "history": result.history,
    }
    model = replace(model, early_stop=calibration.early_stop,
                    meta={"dataset": data.name, "test_accuracy": test_full,
                          "early_stop_test_accuracy": summary["early_stop_test_accuracy"]})
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out / "model.npz")
    (args.out / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _command_study(args: argparse.Namespace) -> dict:
    from .studies import StudyConfig, run_study, write_report

    data = load_dataset(args.dataset, input_bits=args.input_bits, seed=args.seed, path=args.path,
                        timesteps=args.timesteps)
    arch = _arch(args, data.n_in, data.n_classes, data.encoding)
    study = StudyConfig(keep_fractions=tuple(args.keep_fractions),
                        noise_levels=tuple(args.noise_levels), noise_repeats=args.noise_repeats,
                        max_drop=args.max_drop, seed=args.seed, baselines=not args.no_baselines)
    report = run_study(arch, data, _train_config(args), study)
    json_path, markdown_path = write_report(report, args.out)
    log.info("study written to %s and %s", json_path, markdown_path)
    return report


def main(argv: list[str] | None = None) -> int:
    args = _arguments().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        if args.command == "train":
            summary = _command_train(args)
            print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
        else:
            report = _command_study(args)
            from .studies import render_markdown
            print(render_markdown(report))
    except (DatasetFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
