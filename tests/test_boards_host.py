"""Host API (gen.host) against pseudo-terminals served by small Python stand-ins for a board."""

from __future__ import annotations

import os
import struct
import threading
import tty

import pytest

from boards import protocol
from boards.protocol import Command, ErrorCode
from gen import host
from gen.host import BoardError, HostLink, LinkError, LinkTimeout


class PtyBoard:
    """A pseudo-terminal whose far end sends ``respond(frame)`` for each request frame."""

    def __init__(self, respond):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.respond = respond
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        import select

        buffer = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            if not ready:
                continue
            buffer += os.read(self.master, 4096)
            while len(buffer) >= 6 and buffer[0] == protocol.REQUEST_START:
                length = struct.unpack_from("<H", buffer, 2)[0]
                if len(buffer) < 6 + length:
                    break
                frame = bytes(buffer[:6 + length])
                del buffer[:6 + length]
                self.requests.append(frame)
                os.write(self.master, self.respond(frame))

    def close(self):
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def board_factory():
    boards_made = []

    def make(respond):
        board = PtyBoard(respond)
        boards_made.append(board)
        return board

    yield make
    for board in boards_made:
        board.close()


def test_open_missing_port():
    with pytest.raises(LinkError, match="cannot open serial port '/dev/no-such-board'"):
        HostLink("/dev/no-such-board")


def test_silent_board_times_out(board_factory):
    board = board_factory(lambda frame: b"")
    with HostLink(board.port, timeout=0.2, retries=1) as link:
        with pytest.raises(LinkTimeout, match=r"no response from the board on .* within 0\.2 s"):
            link.status()
    assert len(board.requests) == 2


def test_transport_error_is_retried(board_factory):
    answers = [protocol.encode_response(Command.READ_REG, ErrorCode.CRC),
               protocol.encode_response(Command.READ_REG, ErrorCode.OK, struct.pack("<I", 42))]
    board = board_factory(lambda frame: answers.pop(0))
    with HostLink(board.port, timeout=1.0, retries=2) as link:
        assert link.read_register(0x04) == 42
        assert link.retried == 1
    assert board.requests[0] == protocol.encode_request(Command.READ_REG, b"\x04")


def test_refusal_raises_board_error(board_factory):
    board = board_factory(lambda frame: protocol.encode_response(frame[1], ErrorCode.REJECTED))
    with HostLink(board.port, timeout=1.0) as link:
        with pytest.raises(BoardError, match="the board rejected WRITE_REG: register write "
                                             "rejected by the core") as raised:
            link.write_register(0x04, 0)
    assert raised.value.code is ErrorCode.REJECTED
    assert len(board.requests) == 1


def test_stale_response_is_skipped(board_factory):
    def respond(frame):
        stale = protocol.encode_response(Command.STATUS, ErrorCode.OK, bytes(9))
        return stale + protocol.encode_response(Command.INFER, ErrorCode.OK,
                                                struct.pack("<HBI", 3, 5, 1234))
    board = board_factory(respond)
    with HostLink(board.port, timeout=1.0) as link:
        assert link.infer([1, 2, 3]) == (3, 5, 1234)
    assert board.requests == [protocol.encode_request(Command.INFER, bytes([1, 2, 3]))]


def test_upload_mask_chunks_and_commits(board_factory):
    def respond(frame):
        return protocol.encode_response(frame[1], ErrorCode.OK, struct.pack("<I", 2))
    board = board_factory(respond)
    words = list(range(300))
    with HostLink(board.port, timeout=1.0) as link:
        link.upload_mask(words, lanes=12)
    commands = [frame[1] for frame in board.requests]
    assert commands == [Command.WRITE_MASK] * 3 + [Command.WRITE_REG]
    first = board.requests[0]
    assert struct.unpack_from("<I", first, 4)[0] == 0
    assert struct.unpack_from("<H", first, 2)[0] == 4 + 2 * 128
    assert struct.unpack_from("<I", board.requests[1], 4)[0] == 128
    assert struct.unpack_from("<H", board.requests[2], 2)[0] == 4 + 2 * 44
    assert board.requests[3][4] == host.REG_MASK_COMMIT


def test_cli_reports_missing_model(tmp_path, capsys):
    code = host.main(["--port", "/dev/null", "--model", str(tmp_path / "none.npz")])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_cli_times_out_on_silent_board(board_factory, tmp_path, capsys):
    import numpy as np

    from sw_model.model import save_model
    from sw_model.spec import ArchParams
    from verif.configs import VerifConfig, build_model, early_stop

    arch = ArchParams(sizes=(8, 8, 4), lanes=4, timesteps=4, input_bits=4)
    model = build_model(VerifConfig("host-cli", arch, early_stop(arch, "margin"), seed=1))
    model_path = save_model(model, tmp_path / "model.npz")
    np.savez(tmp_path / "data.npz", x_test=np.zeros((2, 8), dtype=np.int64))
    board = board_factory(lambda frame: b"")
    code = host.main(["--port", board.port, "--model", str(model_path), "--timeout", "0.2",
                      "--retries", "0"])
    assert code == 1
    assert "no response from the board on" in capsys.readouterr().err
