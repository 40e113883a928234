"""Byte protocol of the UART host link (docs/protocol.md), shared by the gateware and the host.

Pure Python: the host side imports this module without Amaranth. Every constant the bridge
gateware (``boards.bridge``) uses to parse and build frames is defined here once.

Request frame (host to board)::

    0xA5 | CMD | LEN (u16 LE) | PAYLOAD (LEN bytes) | CRC (u16 BE)

Response frame (board to host)::

    0x5A | CMD | CODE | LEN (u16 LE) | PAYLOAD (LEN bytes) | CRC (u16 BE)

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no output
XOR) over every byte after the start byte up to the end of the payload. It is sent high byte
first, so running the CRC over the whole frame after the start byte, CRC included, leaves 0.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "PROTOCOL_VERSION",
    "REQUEST_START",
    "RESPONSE_START",
    "Command",
    "ErrorCode",
    "Info",
    "Status",
    "InferResult",
    "crc16",
    "encode_request",
    "encode_response",
    "decode_response",
    "ResponseParser",
    "Response",
    "FrameError",
    "arch_fingerprint",
    "mask_word_bytes",
    "max_payload",
    "pack_mask_words",
]

PROTOCOL_VERSION = 1
REQUEST_START = 0xA5
RESPONSE_START = 0x5A
HEADER_BYTES = 4        # start, CMD, LEN (2) of a request
RESPONSE_HEADER_BYTES = 5  # start, CMD, CODE, LEN (2) of a response
CRC_BYTES = 2
# Bytes of mask words one WRITE_MASK frame carries at most, so that a frame stays short enough to
# retry cheaply and the receive buffer stays within one iCE40 block RAM for small input layers.
MASK_CHUNK_BYTES = 256


class Command(enum.IntEnum):
    """Request commands; the response echoes the command byte."""

    INFO = 0x01        # no payload; returns the build constants (see Info)
    READ_REG = 0x02    # addr u8; returns the register value u32
    WRITE_REG = 0x03   # addr u8, value u32; returns the core STATUS u32 after the write
    WRITE_MASK = 0x04  # start word u32, then words of mask_word_bytes each; returns STATUS u32
    INFER = 0x05       # one byte per input; returns class u16, steps u8, cycles u32
    STATUS = 0x06      # no payload; returns STATUS u32, last error u8, errors u16, frames u16


class ErrorCode(enum.IntEnum):
    """The CODE byte of a response. Responses with a code other than OK carry no payload."""

    OK = 0x00
    CRC = 0x01           # the frame's CRC does not match its contents
    LENGTH = 0x02        # LEN exceeds the receive buffer or does not fit the command
    TIMEOUT = 0x03       # the frame stopped before its end (inter-byte timeout)
    COMMAND = 0x04       # unknown command byte in a frame with a valid CRC
    VALUE = 0x05         # an input above 2**input_bits - 1, or mask words past the mask memory
    REJECTED = 0x06      # the core ignored a register write (STATUS bit 2 was set)
    NOT_READY = 0x07     # the core did not accept the sample (mask update open or still busy)
    CORE_TIMEOUT = 0x08  # no result within the cycle limit; the inference was aborted
    SYNC = 0x09          # bytes that start no frame arrived, then the line went quiet
    UART = 0x0A          # a UART framing error (stop bit low) inside a frame

    @property
    def meaning(self) -> str:
        return _ERROR_MEANINGS[self]


_ERROR_MEANINGS = {
    ErrorCode.OK: "success",
    ErrorCode.CRC: "CRC mismatch",
    ErrorCode.LENGTH: "invalid frame length",
    ErrorCode.TIMEOUT: "frame truncated (inter-byte timeout)",
    ErrorCode.COMMAND: "unknown command",
    ErrorCode.VALUE: "argument out of range",
    ErrorCode.REJECTED: "register write rejected by the core",
    ErrorCode.NOT_READY: "core not ready for a sample",
    ErrorCode.CORE_TIMEOUT: "inference timed out and was aborted",
    ErrorCode.SYNC: "bytes outside a frame",
    ErrorCode.UART: "UART framing error",
}


class FrameError(ValueError):
    """A response frame that cannot be decoded: bad start byte, length or CRC."""


def crc16(data: bytes | bytearray, crc: int = 0xFFFF) -> int:
    """Return the CRC-16/CCITT-FALSE of ``data``, continuing from ``crc``."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode_request(command: int, payload: bytes = b"") -> bytes:
    """Return a complete request frame carrying ``payload``."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the 16-bit length field")
    body = struct.pack("<BH", command, len(payload)) + bytes(payload)
    return bytes([REQUEST_START]) + body + struct.pack(">H", crc16(body))


def encode_response(command: int, code: int, payload: bytes = b"") -> bytes:
    """Return a complete response frame, as the board sends it."""
    body = struct.pack("<BBH", command, code, len(payload)) + bytes(payload)
    return bytes([RESPONSE_START]) + body + struct.pack(">H", crc16(body))


@dataclass(frozen=True)
class Response:
    """A decoded response frame."""

    command: int
    code: int
    payload: bytes

    @property
    def error(self) -> ErrorCode | None:
        """The error code, or None for OK. An unknown code raises ValueError."""
        return None if self.code == ErrorCode.OK else ErrorCode(self.code)


def decode_response(frame: bytes) -> Response:
    """Decode one complete response frame; raise FrameError when it is malformed."""
    if len(frame) < RESPONSE_HEADER_BYTES + CRC_BYTES:
        raise FrameError(f"response of {len(frame)} bytes is shorter than the minimum 7")
    if frame[0] != RESPONSE_START:
        raise FrameError(f"response starts with 0x{frame[0]:02X}, expected 0x{RESPONSE_START:02X}")
    command, code, length = struct.unpack_from("<BBH", frame, 1)
    if len(frame) != RESPONSE_HEADER_BYTES + length + CRC_BYTES:
        raise FrameError(f"response LEN is {length}, but the frame has {len(frame)} bytes")
    if crc16(frame[1:]) != 0:
        raise FrameError(f"response CRC mismatch in {frame.hex()}")
    return Response(command, code, bytes(frame[RESPONSE_HEADER_BYTES:-CRC_BYTES]))


class ResponseParser:
    """Incremental response decoder: feed bytes as they arrive, collect whole frames.

    Bytes before a start byte are skipped and counted in ``skipped``. A frame whose CRC does not
    match is dropped and counted in ``damaged``, and decoding resumes at the next start byte after
    the bad frame's start byte.
    """

    def __init__(self):
        self._buffer = bytearray()
        self.skipped = 0
        self.damaged = 0

    def feed(self, data: bytes) -> list[Response]:
        """Add ``data`` and return the frames completed by it, oldest first."""
        self._buffer += data
        frames = []
        while True:
            start = self._buffer.find(RESPONSE_START)
            if start < 0:
                self.skipped += len(self._buffer)
                self._buffer.clear()
                return frames
            self.skipped += start
            del self._buffer[:start]
            if len(self._buffer) < RESPONSE_HEADER_BYTES:
                return frames
            length = struct.unpack_from("<H", self._buffer, 3)[0]
            total = RESPONSE_HEADER_BYTES + length + CRC_BYTES
            if len(self._buffer) < total:
                return frames
            frame = bytes(self._buffer[:total])
            if crc16(frame[1:]) != 0:
                # Either a damaged frame or a start byte inside noise: drop only the start byte.
                del self._buffer[:1]
                self.damaged += 1
                continue
            del self._buffer[:total]
            frames.append(decode_response(frame))


# -- Payloads ------------------------------------------------------------------------------------

_INFO_FORMAT = "<BIHHBBHIHIII"


@dataclass(frozen=True)
class Info:
    """Build constants the board reports in its INFO response."""

    protocol_version: int
    core_id: int
    n_in: int
    n_out: int
    input_bits: int
    timesteps: int
    lanes: int
    mask_words: int
    max_payload: int
    clock_hz: int
    baud: int
    arch_fingerprint: int

    def pack(self) -> bytes:
        return struct.pack(_INFO_FORMAT, self.protocol_version, self.core_id, self.n_in,
                           self.n_out, self.input_bits, self.timesteps, self.lanes,
                           self.mask_words, self.max_payload, self.clock_hz, self.baud,
                           self.arch_fingerprint)

    @classmethod
    def unpack(cls, payload: bytes) -> "Info":
        if len(payload) != struct.calcsize(_INFO_FORMAT):
            raise FrameError(f"INFO payload has {len(payload)} bytes, expected "
                             f"{struct.calcsize(_INFO_FORMAT)}")
        return cls(*struct.unpack(_INFO_FORMAT, payload))


INFO_BYTES = struct.calcsize(_INFO_FORMAT)


@dataclass(frozen=True)
class Status:
    """The STATUS response: the core's STATUS register and the bridge's error counters."""

    core_status: int
    last_error: int
    error_count: int
    frame_count: int

    @property
    def busy(self) -> bool:
        return bool(self.core_status & 1)

    @property
    def mask_update_open(self) -> bool:
        return bool(self.core_status & 2)

    @property
    def write_rejected(self) -> bool:
        return bool(self.core_status & 4)

    @property
    def result_waiting(self) -> bool:
        return bool(self.core_status & 8)

    @property
    def inferences(self) -> int:
        """Inferences the core completed since reset, modulo 2**16."""
        return self.core_status >> 16

    @classmethod
    def unpack(cls, payload: bytes) -> "Status":
        if len(payload) != 9:
            raise FrameError(f"STATUS payload has {len(payload)} bytes, expected 9")
        return cls(*struct.unpack("<IBHH", payload))


STATUS_BYTES = 9


class InferResult(NamedTuple):
    """The INFER response: class, timesteps used and cycle count ``C`` of one sample."""

    cls: int
    steps: int
    cycles: int

    @classmethod
    def unpack(cls, payload: bytes) -> "InferResult":
        if len(payload) != 7:
            raise FrameError(f"INFER payload has {len(payload)} bytes, expected 7")
        return cls(*struct.unpack("<HBI", payload))


INFER_BYTES = 7


# -- Build constants shared by the gateware and the host ----------------------------------------

def mask_word_bytes(lanes: int) -> int:
    """Return the bytes of one mask word on the wire: ``ceil(lanes / 8)``, lane 0 in bit 0."""
    return -(-lanes // 8)


def max_payload(n_in: int, lanes: int) -> int:
    """Return the largest request payload a board accepts: one sample or one mask chunk."""
    word_bytes = mask_word_bytes(lanes)
    return max(n_in, 4 + word_bytes * max(1, MASK_CHUNK_BYTES // word_bytes), 5)


def arch_fingerprint(arch_dict: dict) -> int:
    """Return CRC-32 of the canonical JSON of the architecture, so a host can match a model file
    against the bitstream it talks to."""
    import json
    text = json.dumps(arch_dict, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode())


def pack_mask_words(words, lanes: int) -> bytes:
    """Pack mask words (ints of ``lanes`` bits) little-endian, ``mask_word_bytes`` each."""
    width = mask_word_bytes(lanes)
    return b"".join(int(word).to_bytes(width, "little") for word in words)
