"""Host side of the board's UART link: a Python API and a command line.

``python -m gen.host --port /dev/ttyUSB1 --model build/digits_icebreaker/model.npz`` uploads the
model's mask and settings, streams the test samples, and prints accuracy, mean timesteps and
per-sample latency. The byte protocol is documented in docs/protocol.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from boards import protocol
from boards.protocol import Command, ErrorCode, InferResult, Info, Status

__all__ = ["HostLink", "LinkError", "LinkTimeout", "BoardError", "RunSummary", "run_samples",
           "main"]

log = logging.getLogger(__name__)

# Register addresses of the core (docs/architecture.md, "Host interfaces of the accelerator core").
REG_ID, REG_STATUS, REG_CONTROL = 0x00, 0x01, 0x02
REG_ES_RULE, REG_BUDGET, REG_MIN_STEPS, REG_MARGIN, REG_CONF_LIMIT = 0x03, 0x04, 0x05, 0x06, 0x07
REG_SCALE_ADDR, REG_SCALE_DATA = 0x08, 0x09
REG_MASK_COMMIT = 0x0C
REG_THRESHOLD_0 = 0x10
CORE_ID = 0x534E4E31
RULE_CODES = {"off": 0, "margin": 1, "confidence": 2}

# Error codes that a damaged or lost byte on the line can cause. A request that gets one of them
# is sent again; the other codes report a request the board decoded and rejected.
TRANSPORT_ERRORS = {ErrorCode.CRC, ErrorCode.LENGTH, ErrorCode.TIMEOUT, ErrorCode.SYNC,
                    ErrorCode.UART}


class LinkError(RuntimeError):
    """The host link failed: no port, no response, or responses that cannot be decoded."""


class LinkTimeout(LinkError):
    """No response from the board within the timeout."""


class BoardError(LinkError):
    """The board answered a request with an error code."""

    def __init__(self, command: int, code: ErrorCode, message: str):
        super().__init__(message)
        self.command = command
        self.code = code


class HostLink:
    """A connection to a board running the accelerator's UART bridge.

    Parameters
    ----------
    port : serial device (``/dev/ttyUSB1``) or any pyserial URL.
    baud : UART bit rate the bitstream was built for.
    timeout : seconds to wait for each response.
    retries : how often a request is sent again after a transport error or a timeout.

    Every method sends one request (``upload_mask`` several) and waits for its response. Requests
    are idempotent, so a retry after a lost response is safe.
    """

    def __init__(self, port: str, baud: int = 115200, timeout: float = 2.0, *, retries: int = 2):
        import serial

        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.retries = retries
        self.retried = 0
        try:
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=0.05,
                                                 write_timeout=max(timeout, 1.0))
        except (serial.SerialException, ValueError) as error:
            raise LinkError(f"cannot open serial port {port!r}: {error}") from None
        self._parser = protocol.ResponseParser()
        self._pending: list[protocol.Response] = []

    def close(self) -> None:
        self._serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- frames ----------------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        """Write bytes to the line unchanged (tests use it to send damaged frames)."""
        self._serial.write(data)
        self._serial.flush()

    def read_response(self, timeout: float | None = None) -> protocol.Response:
        """Return the next response frame; raise LinkTimeout when none arrives in time."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._pending:
            if time.monotonic() > deadline:
                raise LinkTimeout(f"no response from the board on {self.port} within "
                                  f"{timeout:g} s; check the port, the baud rate ({self.baud}) "
                                  f"and that the bitstream is loaded")
            chunk = self._serial.read(max(1, self._serial.in_waiting))
            if chunk:
                self._pending += self._parser.feed(chunk)
        return self._pending.pop(0)

    def request(self, command: int, payload: bytes = b"") -> bytes:
        """Send one request and return the payload of its OK response.

        Transport errors and timeouts are retried ``retries`` times; a refusal raises BoardError.
        OK responses to other commands (left over from an earlier, retried request) are skipped.
        """
        frame = protocol.encode_request(command, payload)
        name = Command(command).name if command in Command._value2member_map_ else hex(command)
        for attempt in range(self.retries + 1):
            self._serial.reset_input_buffer()
            self._pending.clear()
            self.send_raw(frame)
            try:
                response = self.read_response()
                while response.code == ErrorCode.OK and response.command != command:
                    response = self.read_response()
            except LinkTimeout:
                if attempt == self.retries:
                    raise
                log.warning("host: %s timed out; sending it again", name)
                self.retried += 1
                self._wait_quiet()
                continue
            if response.code == ErrorCode.OK:
                return response.payload
            known = response.code in ErrorCode._value2member_map_
            code = ErrorCode(response.code) if known else None
            meaning = code.meaning if known else f"unknown error code 0x{response.code:02X}"
            if code not in TRANSPORT_ERRORS:
                raise BoardError(command, code, f"the board rejected {name}: {meaning}")
            if attempt < self.retries:
                log.warning("host: %s answered with %s; sending it again", name, meaning)
                self.retried += 1
                self._wait_quiet()
        raise LinkError(f"{name} failed {self.retries + 1} times with transport errors; "
                        f"check the cable and the baud rate ({self.baud})")

    def _wait_quiet(self) -> None:
        # Let the board's inter-byte timeout expire and drop whatever it still sends.
        time.sleep(0.05)
        self._serial.reset_input_buffer()

    # -- commands --------------------------------------------------------------------------------
    def info(self) -> Info:
        info = Info.unpack(self.request(Command.INFO))
        if info.core_id != CORE_ID:
            raise LinkError(f"the board's core ID is 0x{info.core_id:08X}, expected "
                            f"0x{CORE_ID:08X}: this is not the accelerator")
        return info

    def status(self) -> Status:
        return Status.unpack(self.request(Command.STATUS))

    def read_register(self, address: int) -> int:
        return struct.unpack("<I", self.request(Command.READ_REG, bytes([address])))[0]

    def write_register(self, address: int, value: int) -> int:
        """Write a core register and return the STATUS register read after the write."""
        payload = struct.pack("<BI", address, value & 0xFFFFFFFF)
        return struct.unpack("<I", self.request(Command.WRITE_REG, payload))[0]

    def upload_mask(self, words, lanes: int, *, chunk_words: int | None = None) -> None:
        """Write the whole mask memory (``words``, ints of ``lanes`` bits) and commit it."""
        word_bytes = protocol.mask_word_bytes(lanes)
        chunk = chunk_words or max(1, protocol.MASK_CHUNK_BYTES // word_bytes)
        words = [int(w) for w in words]
        for start in range(0, len(words), chunk):
            payload = struct.pack("<I", start) + protocol.pack_mask_words(words[start:start + chunk],
                                                                          lanes)
            self.request(Command.WRITE_MASK, payload)
        self.write_register(REG_MASK_COMMIT, 0)

    def write_settings(self, early_stop, thresholds=()) -> None:
        """Write the early-stop registers, the SCALE table and the thresholds."""
        # MIN_STEPS must not exceed BUDGET at any point, so lower it before BUDGET changes.
        self.write_register(REG_MIN_STEPS, 1)
        self.write_register(REG_BUDGET, early_stop.budget)
        self.write_register(REG_MIN_STEPS, early_stop.min_steps)
        self.write_register(REG_ES_RULE, RULE_CODES[early_stop.rule])
        self.write_register(REG_MARGIN, early_stop.margin)
        if early_stop.rule == "confidence":
            self.write_register(REG_CONF_LIMIT, early_stop.conf_limit)
            self.write_register(REG_SCALE_ADDR, 0)
            for value in early_stop.scale:
                self.write_register(REG_SCALE_DATA, value)
        for layer, theta in enumerate(thresholds):
            self.write_register(REG_THRESHOLD_0 + layer, theta)

    def configure(self, model) -> Info:
        """Check that the board was built for ``model``'s architecture, then upload its mask,
        settings and thresholds. Return the board's INFO."""
        from hdl.layout import mask_words

        info = self.info()
        expected = protocol.arch_fingerprint(model.arch.to_dict())
        if info.arch_fingerprint != expected:
            raise LinkError(f"the bitstream was built for another architecture (fingerprint "
                            f"0x{info.arch_fingerprint:08X}, the model has 0x{expected:08X}: "
                            f"{info.n_in} inputs, {info.n_out} classes on the board); rebuild "
                            f"the bitstream for this model")
        self.upload_mask(mask_words(model.arch, model.masks), model.arch.lanes)
        self.write_settings(model.early_stop, model.thresholds)
        return info

    def infer(self, sample) -> InferResult:
        """Run one sample (``n_in`` intensities) and return (class, steps, cycles)."""
        data = bytes(int(v) for v in np.asarray(sample).ravel())
        return InferResult.unpack(self.request(Command.INFER, data))


# -- running a test set --------------------------------------------------------------------------

@dataclass
class RunSummary:
    """Results of streaming samples through a board."""

    classes: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    cycles: list = field(default_factory=list)
    round_trip_ms: list = field(default_factory=list)
    labels: list | None = None
    clock_hz: int = 0
    golden_mismatches: list = field(default_factory=list)
    retried: int = 0

    @property
    def accuracy(self) -> float | None:
        if self.labels is None or not self.classes:
            return None
        return float(np.mean(np.array(self.classes) == np.array(self.labels[:len(self.classes)])))

    def to_dict(self) -> dict:
        cycles = np.array(self.cycles, dtype=np.float64)
        return {
            "samples": len(self.classes), "classes": self.classes, "steps": self.steps,
            "cycles": self.cycles, "round_trip_ms": self.round_trip_ms,
            "accuracy": self.accuracy,
            "mean_steps": float(np.mean(self.steps)) if self.steps else None,
            "mean_cycles": float(cycles.mean()) if len(cycles) else None,
            "mean_latency_us": float(cycles.mean() / self.clock_hz * 1e6)
            if len(cycles) and self.clock_hz else None,
            "clock_hz": self.clock_hz, "golden_mismatches": self.golden_mismatches,
            "retried": self.retried,
        }

    def format(self) -> str:
        d = self.to_dict()
        lines = [f"samples:        {d['samples']}"]
        if d["accuracy"] is not None:
            lines.append(f"accuracy:       {100 * d['accuracy']:.2f}%")
        if d["samples"]:
            cycles = np.array(self.cycles)
            lines.append(f"mean timesteps: {d['mean_steps']:.2f}")
            lines.append(f"latency:        mean {d['mean_cycles']:.0f} cycles "
                         f"({d['mean_latency_us']:.1f} us at {self.clock_hz / 1e6:g} MHz), "
                         f"min {cycles.min()}, max {cycles.max()} cycles")
            lines.append(f"round trip:     mean {np.mean(self.round_trip_ms):.2f} ms per sample "
                         f"(UART included)")
        if self.retried:
            lines.append(f"retried:        {self.retried} requests after transport errors")
        return "\n".join(lines)


def run_samples(link: HostLink, x: np.ndarray, *, labels=None, clock_hz: int = 0,
                golden=None, progress: bool = True) -> RunSummary:
    """Stream the rows of ``x`` (int, (B, n_in)) through the board.

    ``golden``, when given, is a ``GoldenResult`` for the same rows; every sample whose class,
    steps or cycles differ is recorded in ``golden_mismatches``.
    """
    from tqdm import tqdm

    summary = RunSummary(labels=None if labels is None else [int(v) for v in labels],
                         clock_hz=clock_hz)
    retried_before = link.retried
    for index in tqdm(range(len(x)), desc="samples", unit="sample", disable=not progress or None,
                      leave=False):
        started = time.perf_counter()
        result = link.infer(x[index])
        summary.round_trip_ms.append(round(1e3 * (time.perf_counter() - started), 3))
        summary.classes.append(result.cls)
        summary.steps.append(result.steps)
        summary.cycles.append(result.cycles)
        log.debug("sample %d: class %d, %d steps, %d cycles", index, *result)
        if golden is not None:
            expected = (int(golden.classes[index]), int(golden.steps[index]),
                        int(golden.cycles[index]))
            if tuple(result) != expected:
                summary.golden_mismatches.append({"sample": index, "board": list(result),
                                                  "golden": list(expected)})
    summary.retried = link.retried - retried_before
    return summary


def _load_samples(path: Path, limit: int | None):
    """Return (x, labels) from a data.npz (``x_test``, ``y_test``) or an .npy array."""
    if not path.is_file():
        raise FileNotFoundError(f"sample file {str(path)!r} not found")
    if path.suffix == ".npy":
        x, y = np.load(path), None
    else:
        with np.load(path) as archive:
            key = "x_test" if "x_test" in archive.files else "x"
            if key not in archive.files:
                raise ValueError(f"{str(path)!r} has neither 'x_test' nor 'x'")
            x = archive[key]
            y_key = "y_test" if key == "x_test" else "y"
            y = archive[y_key] if y_key in archive.files else None
    if limit is not None:
        x = x[:limit]
        y = None if y is None else y[:limit]
    return np.asarray(x), y


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gen.host",
        description="Configure a board running the accelerator and stream test samples through "
                    "it over its UART; print accuracy, mean timesteps and per-sample latency.")
    link = parser.add_argument_group("link")
    link.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB1")
    link.add_argument("--baud", type=int, default=115200,
                      help="UART bit rate the bitstream was built for (default: %(default)s)")
    link.add_argument("--timeout", type=float, default=2.0,
                      help="seconds to wait for each response (default: %(default)s)")
    link.add_argument("--retries", type=int, default=2,
                      help="resends after a transport error or timeout (default: %(default)s)")
    setup = parser.add_argument_group("setup")
    setup.add_argument("--model", required=True, type=Path, help="model.npz of the bitstream")
    setup.add_argument("--no-configure", action="store_true",
                       help="skip uploading mask, settings and thresholds (the bitstream "
                            "already holds the model's)")
    run = parser.add_argument_group("run")
    run.add_argument("--samples", type=Path, default=None,
                     help="data.npz with x_test and y_test, or an .npy array of samples "
                          "(default: data.npz next to the model)")
    run.add_argument("--limit", type=int, default=None, help="send only the first N samples")
    run.add_argument("--check-golden", action="store_true",
                     help="compare every result with the golden model; exit 1 on a mismatch")
    run.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    run.add_argument("-v", "--verbose", action="store_true", help="log every sample")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from sw_model.model import ModelFileError, load_model

    try:
        model = load_model(args.model)
        x, labels = _load_samples(args.samples or args.model.with_name("data.npz"), args.limit)
    except (ModelFileError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    try:
        with HostLink(args.port, args.baud, args.timeout, retries=args.retries) as link:
            info = link.info() if args.no_configure else link.configure(model)
            log.info("board: %d inputs, %d classes, %g MHz, protocol %d", info.n_in, info.n_out,
                     info.clock_hz / 1e6, info.protocol_version)
            if x.ndim != 2 or x.shape[1] != info.n_in:
                print(f"error: samples have shape {x.shape}, the board takes {info.n_in} inputs",
                      file=sys.stderr)
                return 2
            golden = None
            if args.check_golden:
                from sw_model import golden as golden_model
                golden = golden_model.run(model, x)
            summary = run_samples(link, x, labels=labels, clock_hz=info.clock_hz, golden=golden)
    except LinkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    print(summary.format())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    if golden is not None:
        if summary.golden_mismatches:
            first = summary.golden_mismatches[0]
            print(f"error: {len(summary.golden_mismatches)} of {len(x)} samples differ from the "
                  f"golden model; first: sample {first['sample']}, board (class, steps, cycles) "
                  f"{first['board']}, golden {first['golden']}", file=sys.stderr)
            return 1
        print(f"golden model: all {len(x)} samples agree in class, steps and cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
