"""End to end without a board: the real host CLI against the simulated board over a pty.

The board logic (core, bridge, UART) runs under Verilator; its UART is bridged to a
pseudo-terminal (boards/sim.py). The simulated core is built with model A's mask and settings,
and the host uploads model B's (same architecture, other mask, thresholds and early-stop rule),
so the results can only equal model B's golden results if the uploads worked.

Run as a script (``python tests/test_boards_e2e.py corrupt --port ...``), this file is also the
client that sends damaged frames and checks the board's error codes and its recovery.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from boards import protocol  # noqa: E402
from boards.protocol import Command, ErrorCode  # noqa: E402

SMALL_SIZES = (12, 10, 4)     # 10 hidden neurons: the last of 3 lane groups is partial
SMALL_LANES = 4


def _models(sizes, lanes, timesteps=8):
    from sw_model.spec import ArchParams
    from verif.configs import VerifConfig, build_model, early_stop

    arch = ArchParams(sizes=sizes, lanes=lanes, timesteps=timesteps, input_bits=4)
    built = build_model(VerifConfig("board-a", arch, early_stop(arch, "margin", margin=4), seed=3,
                                    mask_density=0.5))
    uploaded = build_model(VerifConfig("board-b", arch, early_stop(arch, "confidence", min_steps=2),
                                       seed=11, mask_density=0.4, threshold_scale=0.8))
    return built, uploaded


def _samples(arch, count: int, seed: int = 0):
    """Random intensities and labels of a synthetic task: the label is the quarter of the
    inputs (modulo the class count) with the largest sum."""
    from verif.configs import random_inputs

    x = random_inputs(arch, count, np.random.default_rng(seed))
    quarters = np.array_split(np.arange(arch.n_in), 4)
    y = np.argmax(np.stack([x[:, q].sum(axis=1) for q in quarters], axis=1), axis=1) % arch.n_out
    return x, y


def _run_board(tmp_path: Path, sizes, lanes, count: int):
    from sw_model import golden
    from sw_model.model import save_model

    from boards.sim import run_clients

    built, uploaded = _models(sizes, lanes)
    model_path = save_model(uploaded, tmp_path / "model.npz")
    x, y = _samples(uploaded.arch, count)
    np.savez(tmp_path / "data.npz", x_test=x, y_test=y)
    host = [sys.executable, "-m", "gen.host", "--port", "{port}", "--model", str(model_path),
            "--timeout", "30", "--check-golden"]
    clients = [
        host + ["--out", str(tmp_path / "results.json")],
        [sys.executable, __file__, "corrupt", "--port", "{port}", "--model", str(model_path),
         "--out", str(tmp_path / "corrupt.json")],
        host + ["--no-configure", "--limit", "4", "--out", str(tmp_path / "recovered.json")],
    ]
    # Builds are cached by the hash of their Verilog (boards.sim.default_build_root), so every
    # distinct design has its own build folder; a file lock serialises parallel workers.
    outcomes = run_clients(built, tmp_path / "board", clients, client_timeout_s=600)
    expected = golden.run(uploaded, x)
    return outcomes, expected, x


def _check(tmp_path: Path, outcomes, expected, x):
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert outcome.returncode == 0, f"{outcome.argv}:\n{outcome.output()[-3000:]}"

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["samples"] == len(x)
    assert results["classes"] == expected.classes.tolist()
    assert results["steps"] == expected.steps.tolist()
    assert results["cycles"] == expected.cycles.tolist()
    assert results["golden_mismatches"] == []
    assert results["accuracy"] is not None
    cli_output = outcomes[0].output()
    assert "accuracy:" in cli_output
    assert "mean timesteps:" in cli_output
    assert "latency:" in cli_output

    corrupt = json.loads((tmp_path / "corrupt.json").read_text())
    assert corrupt["codes"] == {
        "bad_crc": "CRC", "truncated": "TIMEOUT", "oversized": "LENGTH", "junk": "SYNC",
        "unknown_command": "COMMAND", "value": "VALUE", "wrong_length": "LENGTH",
    }
    assert corrupt["after"] == [int(expected.classes[0]), int(expected.steps[0]),
                                int(expected.cycles[0])]
    assert corrupt["status"]["error_count"] >= 7

    recovered = json.loads((tmp_path / "recovered.json").read_text())
    assert recovered["classes"] == expected.classes[:4].tolist()
    assert recovered["cycles"] == expected.cycles[:4].tolist()


def test_host_cli_against_simulated_board(tmp_path):
    outcomes, expected, x = _run_board(tmp_path, SMALL_SIZES, SMALL_LANES, count=24)
    _check(tmp_path, outcomes, expected, x)


@pytest.mark.slow
def test_host_cli_against_simulated_board_digits_size(tmp_path):
    outcomes, expected, x = _run_board(tmp_path, (64, 32, 10), 8, count=40)
    _check(tmp_path, outcomes, expected, x)


# -- the damaged-frame client (run by the test above inside the board simulation) ---------------

def corrupt_main(argv) -> int:
    from gen.host import HostLink
    from sw_model import golden
    from sw_model.model import load_model

    parser = argparse.ArgumentParser(description="send damaged frames to a board, check the "
                                                 "error codes and that the board recovers")
    parser.add_argument("--port", required=True)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    x = np.load(args.model.with_name("data.npz"))["x_test"]
    sample = bytes(int(v) for v in x[0])
    codes = {}

    with HostLink(args.port, timeout=30, retries=0) as link:
        def answer(name, data: bytes, expected_command: int):
            link.send_raw(data)
            response = link.read_response()
            assert response.command == expected_command, (name, response)
            codes[name] = ErrorCode(response.code).name

        good = protocol.encode_request(Command.INFER, sample)
        bad_crc = bytearray(good)
        bad_crc[6] ^= 0x10
        answer("bad_crc", bytes(bad_crc), Command.INFER)
        answer("truncated", good[:len(good) // 2], Command.INFER)
        answer("oversized", b"\xa5\x05\xff\xff" + bytes(8), Command.INFER)
        answer("junk", b"\x00\x42\x13", 0)
        answer("unknown_command", protocol.encode_request(0x6B), 0x6B)
        answer("value", protocol.encode_request(Command.INFER, bytes([200]) + sample[1:]),
               Command.INFER)
        answer("wrong_length", protocol.encode_request(Command.READ_REG, b"\x01\x02"),
               Command.READ_REG)
        time.sleep(0.1)

        after = list(link.infer(x[0]))
        expected = golden.run(model, x[:1])
        assert after == [int(expected.classes[0]), int(expected.steps[0]),
                         int(expected.cycles[0])], (after, expected)
        status = link.status()

    args.out.write_text(json.dumps({"codes": codes, "after": after, "status": {
        "error_count": status.error_count, "frame_count": status.frame_count,
        "last_error": status.last_error}}, indent=2))
    print(json.dumps(codes))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "corrupt":
        sys.exit(corrupt_main(sys.argv[2:]))
    sys.exit(f"usage: {sys.argv[0]} corrupt --port PORT --model MODEL --out FILE")
