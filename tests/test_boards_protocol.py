# amaranth: UnusedElaboratable=no
"""Host-link protocol: CRC, framing, and the UART and bridge gateware in Amaranth's simulator.

The bridge tests put a Python model of the core's host interfaces (register bus, sample and
result streams, as docs/architecture.md defines them) behind ``SerialBridge`` and talk to it
over the simulated UART pins, bit by bit.
"""

from __future__ import annotations

import struct

import pytest
from amaranth.hdl import Fragment
from amaranth.lib.crc import catalog
from amaranth.sim import Simulator

from boards import protocol
from boards.bridge import Bridge, CoreRegister
from boards.protocol import Command, ErrorCode
from boards.top import SerialBridge
from boards.uart import UARTRx, UARTTx, baud_divisor
from sw_model.spec import ArchParams

DIVISOR = 4
TIMEOUT_CYCLES = 400
ARCH = ArchParams(sizes=(6, 8, 4), lanes=4, input_bits=4, timesteps=8)
CORE_ID = 0x534E4E31


# -- pure Python ---------------------------------------------------------------------------------

def test_crc16_check_value():
    assert protocol.crc16(b"123456789") == 0x29B1


def test_crc16_matches_amaranth_catalog():
    params = catalog.CRC16_CCITT_FALSE(8)
    for data in (b"", b"\x00", b"\xa5\x01\x00\x00", bytes(range(256))):
        assert protocol.crc16(data) == params.compute(data)


def test_request_crc_residue_is_zero():
    frame = protocol.encode_request(Command.INFER, bytes(range(6)))
    assert frame[0] == protocol.REQUEST_START
    assert struct.unpack_from("<H", frame, 2)[0] == 6
    assert protocol.crc16(frame[1:]) == 0


def test_response_roundtrip():
    frame = protocol.encode_response(Command.READ_REG, ErrorCode.OK, b"\x01\x02\x03\x04")
    response = protocol.decode_response(frame)
    assert response.command == Command.READ_REG
    assert response.error is None
    assert response.payload == b"\x01\x02\x03\x04"


def test_decode_response_rejects_bad_crc():
    frame = bytearray(protocol.encode_response(Command.STATUS, ErrorCode.OK, b"\x00" * 9))
    frame[6] ^= 0x40
    with pytest.raises(protocol.FrameError, match="CRC mismatch"):
        protocol.decode_response(bytes(frame))


def test_response_parser_skips_noise():
    good = protocol.encode_response(Command.INFO, ErrorCode.CRC)
    parser = protocol.ResponseParser()
    frames = parser.feed(b"\x00\x13" + good[:3])
    assert frames == []
    frames = parser.feed(good[3:] + good)
    assert len(frames) == 2
    assert frames[0].error is ErrorCode.CRC
    assert parser.skipped == 2


def test_response_parser_recovers_after_corrupt_frame():
    bad = bytearray(protocol.encode_response(Command.INFO, ErrorCode.OK, b"\x11\x22"))
    bad[-1] ^= 1
    good = protocol.encode_response(Command.STATUS, ErrorCode.LENGTH)
    parser = protocol.ResponseParser()
    frames = parser.feed(bytes(bad) + good)
    assert [f.command for f in frames] == [Command.STATUS]
    assert parser.damaged == 1


def test_info_pack_roundtrip():
    info = protocol.Info(1, CORE_ID, 64, 10, 4, 16, 8, 1280, 260, 24_000_000, 115200, 0xDEADBEEF)
    assert len(info.pack()) == protocol.INFO_BYTES
    assert protocol.Info.unpack(info.pack()) == info


def test_max_payload_covers_sample_and_mask_chunk():
    assert protocol.max_payload(64, 8) == 260
    assert protocol.max_payload(784, 8) == 784
    assert protocol.max_payload(64, 24) == 4 + 3 * 85


def test_baud_divisor_rejects_large_error():
    assert baud_divisor(12e6, 115200) == 104
    with pytest.raises(ValueError, match="too high"):
        baud_divisor(12e6, 4_000_000)
    with pytest.raises(ValueError, match="off with"):
        baud_divisor(12e6, 2_200_000)


# -- simulation helpers --------------------------------------------------------------------------

async def send_uart_byte(ctx, pin, byte: int, divisor: int = DIVISOR, stop: int = 1) -> None:
    """Drive one 8N1 byte on ``pin``; ``stop=0`` sends a framing error."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
    for bit in bits:
        ctx.set(pin, bit)
        await ctx.tick().repeat(divisor)
    ctx.set(pin, 1)


async def receive_uart_bytes(ctx, pin, sink: list, divisor: int = DIVISOR) -> None:
    """Decode 8N1 bytes from ``pin`` forever, appending them to ``sink`` (a simulator process)."""
    countdown, bits = None, []
    async for _, _, level in ctx.tick().sample(pin):
        if countdown is None:
            if level == 0:
                countdown, bits = divisor // 2 + divisor, []
            continue
        countdown -= 1
        if countdown == 0:
            bits.append(level)
            countdown = divisor
            if len(bits) == 9:
                assert bits[8] == 1, "stop bit of a transmitted byte is low"
                sink.append(sum(bit << i for i, bit in enumerate(bits[:8])))
                countdown = None


def test_uart_loopback_and_framing_error():
    m_tx, m_rx = UARTTx(DIVISOR), UARTRx(DIVISOR)
    from amaranth import Module
    m = Module()
    m.submodules.tx, m.submodules.rx = m_tx, m_rx
    m.d.comb += m_rx.rx.eq(m_tx.tx)
    received, errors = [], []
    sent = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80]

    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def monitor(ctx):
        async for _, _, valid, error, data in ctx.tick().sample(m_rx.valid, m_rx.error, m_rx.data):
            if valid:
                received.append(data)
            if error:
                errors.append(data)

    async def source(ctx):
        for byte in sent:
            ctx.set(m_tx.sink.payload, byte)
            ctx.set(m_tx.sink.valid, 1)
            await ctx.tick().until(m_tx.sink.ready)
            ctx.set(m_tx.sink.valid, 0)
        await ctx.tick().repeat(12 * DIVISOR)

    sim.add_process(monitor)
    sim.add_testbench(source)
    sim.run()
    assert received == sent
    assert errors == []

    # A byte whose stop bit is low must be flagged, and the next good byte still received.
    rx = UARTRx(DIVISOR)
    sim = Simulator(rx)
    sim.add_clock(1e-6)
    flags = []

    async def monitor_rx(ctx):
        async for _, _, valid, error, data in ctx.tick().sample(rx.valid, rx.error, rx.data):
            if valid or error:
                flags.append(("valid" if valid else "error", data))

    async def drive(ctx):
        await ctx.tick().repeat(3)
        await send_uart_byte(ctx, rx.rx, 0x3C, stop=0)
        await ctx.tick().repeat(DIVISOR)
        await send_uart_byte(ctx, rx.rx, 0xC3)
        await ctx.tick().repeat(4 * DIVISOR)

    sim.add_process(monitor_rx)
    sim.add_testbench(drive)
    sim.run()
    assert flags == [("error", 0x3C), ("valid", 0xC3)]


class CoreModel:
    """The core's host interfaces, modelled in Python: registers, mask memory and a result
    ``latency`` cycles after the last sample beat (or never when ``hang``)."""

    def __init__(self, arch: ArchParams, latency: int = 30, hang: bool = False):
        self.arch = arch
        self.latency = latency
        self.hang = hang
        self.registers = {0x03: 1, 0x04: arch.timesteps, 0x05: 1, 0x06: 0}
        self.mask = [0] * arch.words
        self.mask_address = 0
        self.mask_open = False
        self.rejected = False
        self.running = False
        self.beats: list[int] = []
        self.samples: list[list[int]] = []
        self.completed = 0
        self.writes: list[tuple[int, int]] = []

    def status(self, waiting: bool) -> int:
        return (self.running | self.mask_open << 1 | self.rejected << 2 | waiting << 3
                | (self.completed & 0xFFFF) << 16)

    def result_of(self, sample):
        return sum(sample) % self.arch.n_out, 1 + sum(sample) % self.arch.timesteps, 1000 + sum(sample)

    def write(self, address: int, data: int) -> None:
        self.writes.append((address, data))
        if address == CoreRegister.CONTROL:
            if data & CoreRegister.CONTROL_CLEAR_STICKY:
                self.rejected = False
            if data & CoreRegister.CONTROL_ABORT:
                self.running = False
                self.beats = []
            return
        if self.running or (address == 0x04 and not 1 <= data <= self.arch.timesteps):
            self.rejected = True
        elif address == CoreRegister.MASK_ADDR:
            self.mask_open, self.mask_address = True, data
        elif address == CoreRegister.MASK_DATA:
            self.mask[self.mask_address] = data
            self.mask_address += 1
        elif address == 0x0C:
            self.mask_open = False
        else:
            self.registers[address] = data

    def read(self, address: int, waiting: bool) -> int:
        if address == CoreRegister.ID:
            return CORE_ID
        if address == CoreRegister.STATUS:
            return self.status(waiting)
        return self.registers.get(address, 0)

    async def process(self, ctx, dut):
        countdown = None
        waiting = False
        ctx.set(dut.in_ready, 1)
        async for _, _, we, re, address, wdata, in_valid, in_ready, in_data, out_ready in \
                ctx.tick().sample(dut.reg_we, dut.reg_re, dut.reg_addr, dut.reg_wdata,
                                  dut.in_valid, dut.in_ready, dut.in_data, dut.out_ready):
            if we:
                self.write(address, wdata)
            if re:
                ctx.set(dut.reg_rdata, self.read(address, waiting))
            if in_valid and in_ready:
                self.running = True
                self.beats.append(in_data)
                if len(self.beats) == self.arch.n_in:
                    countdown = None if self.hang else self.latency
            if waiting and out_ready:
                waiting = False
                ctx.set(dut.out_valid, 0)
            if countdown is not None and self.running:
                countdown -= 1
                if countdown == 0:
                    countdown = None
                    sample = self.beats
                    self.samples.append(sample)
                    self.beats, self.running, waiting = [], False, True
                    self.completed += 1
                    cls, steps, cycles = self.result_of(sample)
                    ctx.set(dut.out_class, cls)
                    ctx.set(dut.out_steps, steps)
                    ctx.set(dut.out_cycles, cycles)
                    ctx.set(dut.out_valid, 1)
            # The core takes beats until the sample is complete, then computes.
            receiving = len(self.beats) < self.arch.n_in
            ctx.set(dut.in_ready, int(receiving and not (self.mask_open or waiting)))


def bridge_info(arch: ArchParams) -> protocol.Info:
    return protocol.Info(protocol.PROTOCOL_VERSION, 0, arch.n_in, arch.n_out, arch.input_bits,
                         arch.timesteps, arch.lanes, arch.words,
                         protocol.max_payload(arch.n_in, arch.lanes), 1_000_000, 250_000, 0x12345678)


def run_link(script, *, core: CoreModel | None = None, cycle_limit: int = 600):
    """Simulate a SerialBridge with ``core`` behind it; ``script(ctx, link)`` talks to it through
    the returned ``Link`` helper. Return the core model."""
    core = core or CoreModel(ARCH)
    arch = core.arch
    bridge = Bridge(arch, bridge_info(arch), timeout_cycles=TIMEOUT_CYCLES, cycle_limit=cycle_limit)
    dut = SerialBridge(bridge, DIVISOR)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    received: list[int] = []
    parser = protocol.ResponseParser()

    class Link:
        async def send(self, ctx, data: bytes, stop: int = 1):
            for byte in data:
                await send_uart_byte(ctx, dut.uart_rx, byte, stop=stop)

        async def response(self, ctx, max_cycles: int = 20_000):
            for _ in range(max_cycles // 10):
                frames = parser.feed(bytes(received))
                received.clear()
                if frames:
                    assert len(frames) == 1, frames
                    return frames[0]
                await ctx.tick().repeat(10)
            raise AssertionError("no response from the bridge")

        async def request(self, ctx, command, payload=b""):
            await self.send(ctx, protocol.encode_request(command, payload))
            return await self.response(ctx)

        async def quiet(self, ctx, cycles: int):
            await ctx.tick().repeat(cycles)
            frames = parser.feed(bytes(received))
            received.clear()
            return frames

    async def monitor(ctx):
        await receive_uart_bytes(ctx, dut.uart_tx, received)

    async def core_process(ctx):
        await core.process(ctx, dut)

    done = []

    async def testbench(ctx):
        await ctx.tick().repeat(5)
        await script(ctx, Link(), dut)
        done.append(True)

    sim.add_process(monitor)
    sim.add_process(core_process)
    sim.add_testbench(testbench)
    sim.run()
    assert done, "testbench did not finish"
    return core


def test_bridge_commands():
    sample = [3, 0, 15, 7, 1, 9]

    async def script(ctx, link, dut):
        r = await link.request(ctx, Command.INFO)
        assert r.error is None
        info = protocol.Info.unpack(r.payload)
        assert info.core_id == CORE_ID
        assert info.n_in == ARCH.n_in
        assert info.mask_words == ARCH.words
        assert info.arch_fingerprint == 0x12345678

        r = await link.request(ctx, Command.WRITE_REG, struct.pack("<BI", 0x04, 5))
        assert r.error is None
        r = await link.request(ctx, Command.READ_REG, bytes([0x04]))
        assert r.error is None
        assert struct.unpack("<I", r.payload)[0] == 5

        words = [0xF, 0x1, 0x8, 0x6]
        r = await link.request(ctx, Command.WRITE_MASK,
                               struct.pack("<I", 3) + protocol.pack_mask_words(words, ARCH.lanes))
        assert r.error is None
        r = await link.request(ctx, Command.WRITE_MASK,
                               struct.pack("<I", ARCH.words - 2) + b"\x05\x0a")
        assert r.error is None                      # ends exactly at the last word
        r = await link.request(ctx, Command.INFER, bytes(sample))
        assert r.error is ErrorCode.NOT_READY      # the mask update is still open
        r = await link.request(ctx, Command.WRITE_REG, struct.pack("<BI", 0x0C, 0))
        assert r.error is None

        r = await link.request(ctx, Command.INFER, bytes(sample))
        assert r.error is None
        result = protocol.InferResult.unpack(r.payload)
        assert (result.cls, result.steps, result.cycles) == (35 % 4, 1 + 35 % 8, 1035)
        assert ctx.get(dut.last_class) == 35 % 4

        r = await link.request(ctx, Command.STATUS)
        status = protocol.Status.unpack(r.payload)
        assert status.inferences == 1
        assert status.error_count == 1
        assert status.last_error == ErrorCode.NOT_READY
        assert status.frame_count == 7

    core = run_link(script)
    assert core.mask[3:7] == [0xF, 0x1, 0x8, 0x6]
    assert core.mask[-2:] == [0x5, 0xA]
    assert core.samples == [sample]
    assert core.registers[0x04] == 5


def test_bridge_rejects_corrupt_frames_and_recovers():
    sample = [1, 2, 3, 4, 5, 6]

    async def script(ctx, link, dut):
        frame = bytearray(protocol.encode_request(Command.INFER, bytes(sample)))
        frame[5] ^= 0x01                                # flip one payload bit
        await link.send(ctx, frame)
        r = await link.response(ctx)
        assert (r.command, r.error) == (Command.INFER, ErrorCode.CRC)
        assert ctx.get(dut.error) == 1

        # Truncated frame: the rest never comes; the inter-byte timeout answers it.
        await link.send(ctx, protocol.encode_request(Command.INFER, bytes(sample))[:7])
        r = await link.response(ctx)
        assert (r.command, r.error) == (Command.INFER, ErrorCode.TIMEOUT)

        # LEN larger than the receive buffer: the frame is dropped until the line is quiet.
        await link.send(ctx, b"\xa5\x05\xff\x7f" + bytes(20))
        r = await link.response(ctx)
        assert r.error is ErrorCode.LENGTH

        # Valid CRC, wrong length for the command, unknown command, value out of range.
        r = await link.request(ctx, Command.INFER, bytes(sample[:5]))
        assert r.error is ErrorCode.LENGTH
        r = await link.request(ctx, 0x7E)
        assert (r.command, r.error) == (0x7E, ErrorCode.COMMAND)
        r = await link.request(ctx, Command.INFER, bytes([16] + sample[1:]))
        assert r.error is ErrorCode.VALUE
        r = await link.request(ctx, Command.WRITE_MASK, struct.pack("<I", ARCH.words - 1) + b"\x01\x02")
        assert r.error is ErrorCode.VALUE
        r = await link.request(ctx, Command.WRITE_MASK, struct.pack("<I", 1 << 20) + b"\x01")
        assert r.error is ErrorCode.VALUE
        r = await link.request(ctx, Command.WRITE_REG, struct.pack("<BI", 0x04, 0))
        assert r.error is ErrorCode.REJECTED

        # Junk between frames: answered with SYNC once the line is quiet...
        await link.send(ctx, b"\x00\x11\x22")
        r = await link.response(ctx)
        assert (r.command, r.error) == (0, ErrorCode.SYNC)
        # ...but junk directly followed by a frame is skipped.
        await link.send(ctx, b"\x33" + protocol.encode_request(Command.INFO))
        r = await link.response(ctx)
        assert r.error is None

        # A UART framing error inside a frame.
        await link.send(ctx, b"\xa5\x06")
        await link.send(ctx, b"\x00", stop=0)
        r = await link.response(ctx)
        assert r.error is ErrorCode.UART

        # After all that, the bridge still works.
        r = await link.request(ctx, Command.INFER, bytes(sample))
        assert r.error is None
        assert protocol.InferResult.unpack(r.payload).cls == 21 % 4
        assert ctx.get(dut.error) == 0
        assert await link.quiet(ctx, 3 * TIMEOUT_CYCLES) == []

    core = run_link(script)
    assert core.samples == [sample]


def test_bridge_aborts_hung_inference():
    async def script(ctx, link, dut):
        r = await link.request(ctx, Command.INFER, bytes([9, 8, 7, 6, 5, 4]))
        assert r.error is ErrorCode.CORE_TIMEOUT
        r = await link.request(ctx, Command.STATUS)
        assert protocol.Status.unpack(r.payload).busy is False

    core = run_link(script, core=CoreModel(ARCH, hang=True), cycle_limit=500)
    # Bits 2..31 of a CONTROL write carry leftover payload bits, which the core ignores.
    control_writes = [data & 0b11 for address, data in core.writes
                      if address == CoreRegister.CONTROL]
    assert CoreRegister.CONTROL_ABORT in control_writes


@pytest.mark.parametrize("lanes", [12, 24, 32])
def test_bridge_writes_multi_byte_mask_words(lanes):
    arch = ArchParams(sizes=(6, lanes, 4), lanes=lanes, input_bits=4, timesteps=8)
    word_bytes = protocol.mask_word_bytes(lanes)
    words = [(0x9A5C3E1 * (i + 1)) & ((1 << lanes) - 1) for i in range(3)]

    async def script(ctx, link, dut):
        r = await link.request(ctx, Command.WRITE_MASK,
                               struct.pack("<I", 2) + protocol.pack_mask_words(words, lanes))
        assert r.error is None
        # Bits past ``lanes`` in the last byte of a word are dropped.
        r = await link.request(ctx, Command.WRITE_MASK,
                               struct.pack("<I", 7) + b"\xff" * word_bytes)
        assert r.error is None
        r = await link.request(ctx, Command.WRITE_MASK,
                               struct.pack("<I", 9) + b"\x01" * (word_bytes + 1))
        assert r.error is ErrorCode.LENGTH               # not a whole number of words
        r = await link.request(ctx, Command.WRITE_MASK, struct.pack("<I", 9))
        assert r.error is ErrorCode.LENGTH               # no word at all
        r = await link.request(ctx, Command.WRITE_MASK,
                               struct.pack("<I", arch.words - 1) + bytes(2 * word_bytes))
        assert r.error is ErrorCode.VALUE                # one word past the memory
        r = await link.request(ctx, Command.WRITE_MASK,
                               struct.pack("<I", arch.words - 2) + bytes(2 * word_bytes))
        assert r.error is None                           # ends at the last word

    core = run_link(script, core=CoreModel(arch))
    assert core.mask[2:5] == words
    assert core.mask[7] == (1 << lanes) - 1
    assert core.mask[9] == 0


def test_bridge_elaborates_for_wide_words():
    arch = ArchParams(sizes=(20, 24, 24), lanes=24, input_bits=8, timesteps=4)
    bridge = Bridge(arch, bridge_info(arch), timeout_cycles=100)
    Fragment.get(bridge, None)
    assert bridge.word_bytes == 3
    wide = ArchParams(sizes=(40, 40, 40), lanes=40)
    with pytest.raises(ValueError, match="at most 32 lanes"):
        Bridge(wide, bridge_info(wide), timeout_cycles=100)
