"""Frame parser and command executor between the UART and the accelerator core.

The byte protocol is defined in ``boards.protocol`` and documented in docs/protocol.md. The
bridge drives the core's three host interfaces (sample stream, result stream, register bus) as
docs/architecture.md, section "Host interfaces of the accelerator core", defines them.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.regs import Control, Register, Status
from sw_model import schedule
from sw_model.spec import ArchParams, bit_length

from . import protocol
from .protocol import Command, ErrorCode

__all__ = ["Bridge", "CoreRegister", "core_cycle_limit"]


class CoreRegister:
    """Word addresses and bits of the core's register bus that the bridge uses."""

    ID = int(Register.ID)
    STATUS = int(Register.STATUS)
    CONTROL = int(Register.CONTROL)
    MASK_ADDR = int(Register.MASK_ADDR)
    MASK_DATA = int(Register.MASK_DATA)

    CONTROL_ABORT = int(Control.ABORT)
    CONTROL_CLEAR_STICKY = int(Control.CLEAR_FLAGS)
    STATUS_WRITE_REJECTED = int(Status.WRITE_REJECTED)


def core_cycle_limit(arch: ArchParams) -> int:
    """Return the cycles the bridge waits for the core before it aborts an inference.

    Twice the longest schedule of docs/architecture.md (every input and neuron spiking at every
    one of ``timesteps`` steps, the confidence rule's decision after each step) plus the
    accumulator clearing pass, plus 4096 cycles of slack.
    """
    drain = schedule.drain_cycles(arch)
    per_step = schedule.ENCODE_CYCLES + schedule.decide_cycles(arch, "confidence")
    for k in range(arch.n_layers):
        per_step += arch.sizes[k] * arch.groups(k) + arch.groups(k) + drain
    worst = schedule.START_CYCLES + arch.timesteps * per_step + schedule.clear_cycles(arch)
    return 2 * worst + 4096


class Bridge(wiring.Component):
    """Protocol engine of the host link: parses request frames, runs them on the core and sends
    one response per request.

    Parameters
    ----------
    arch : ArchParams
        Architecture of the core behind the bridge; fixes the sample length, the input range and
        the mask memory size.
    info : protocol.Info
        Constants returned by the INFO command. ``core_id`` is ignored: the bridge reads it from
        the core's ID register.
    timeout_cycles : int
        Inter-byte timeout: a frame that pauses this long gets an ``ErrorCode.TIMEOUT`` response
        and is dropped. Junk or a discarded frame gets its response once the line is this long
        quiet.
    cycle_limit : int or None
        Cycles the bridge waits for the core to take a sample and return its result before it
        aborts the inference (``ErrorCode.CORE_TIMEOUT``); by default ``core_cycle_limit(arch)``.

    Members
    -------
    rx_data, rx_valid, rx_error : In
        Bytes from the UART receiver: ``rx_valid`` or ``rx_error`` pulse for one cycle per byte.
    tx : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    in_valid, in_ready, in_data : sample stream to the core (``input_bits`` wide).
    out_valid, out_ready, out_class, out_steps, out_cycles : result stream from the core.
    reg_addr, reg_wdata, reg_we, reg_re, reg_rdata : register bus of the core, driven from
        flip-flops; ``reg_rdata`` is read in the cycle after ``reg_re``.
    busy : Out(1)
        High from the first byte of a frame to the end of its response.
    error : Out(1)
        High after an error response, low again after the next OK response.
    last_class : Out(class bits)
        Class of the last successful inference, 0 after reset.

    Bytes that arrive while the bridge executes a command or sends a response are dropped: the
    protocol allows one outstanding request.
    """

    def __init__(self, arch: ArchParams, info: protocol.Info, *, timeout_cycles: int,
                 cycle_limit: int | None = None):
        if arch.lanes > 32:
            raise ValueError(f"the register bus carries mask words of at most 32 lanes, but the "
                             f"core has {arch.lanes} lanes")
        if timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be positive, not {timeout_cycles}")
        self.arch = arch
        self.info = info
        self.timeout_cycles = int(timeout_cycles)
        self.cycle_limit = int(cycle_limit if cycle_limit is not None else core_cycle_limit(arch))
        self.word_bytes = protocol.mask_word_bytes(arch.lanes)
        self.max_payload = protocol.max_payload(arch.n_in, arch.lanes)
        if info.max_payload != self.max_payload:
            raise ValueError(f"info.max_payload is {info.max_payload}, but the bridge accepts "
                             f"{self.max_payload} bytes")
        self.class_bits = max(1, bit_length(arch.n_out - 1))
        super().__init__({
            "rx_data": In(8),
            "rx_valid": In(1),
            "rx_error": In(1),
            "tx": Out(stream.Signature(8)),
            "in_valid": Out(1),
            "in_ready": In(1),
            "in_data": Out(arch.input_bits),
            "out_valid": In(1),
            "out_ready": Out(1),
            "out_class": In(self.class_bits),
            "out_steps": In(bit_length(arch.timesteps)),
            "out_cycles": In(32),
            "reg_addr": Out(8),
            "reg_wdata": Out(32),
            "reg_we": Out(1),
            "reg_re": Out(1),
            "reg_rdata": In(32),
            "busy": Out(1),
            "error": Out(1),
            "last_class": Out(self.class_bits),
        })

    def elaborate(self, platform):
        m = Module()
        arch = self.arch

        # -- receive buffer and CRC checkers ---------------------------------------------------
        m.submodules.buffer = buffer = Memory(shape=8, depth=self.max_payload, init=[])
        buf_wr = buffer.write_port()
        buf_rd = buffer.read_port(transparent_for=())
        m.submodules.rx_crc = rx_crc = catalog.CRC16_CCITT_FALSE(8).create()
        m.submodules.tx_crc = tx_crc = catalog.CRC16_CCITT_FALSE(8).create()
        m.d.comb += rx_crc.data.eq(self.rx_data)

        # -- inter-byte timer: cycles since the last received byte, saturating ------------------
        quiet_timer = Signal(range(self.timeout_cycles + 1))
        quiet = Signal()
        byte_seen = Signal()
        m.d.comb += [byte_seen.eq(self.rx_valid | self.rx_error),
                     quiet.eq(quiet_timer == self.timeout_cycles)]
        with m.If(byte_seen):
            m.d.sync += quiet_timer.eq(0)
        with m.Elif(~quiet):
            m.d.sync += quiet_timer.eq(quiet_timer + 1)

        # -- request fields ---------------------------------------------------------------------
        command = Signal(8)
        length = Signal(16)
        header_index = Signal(2)
        payload_index = Signal(range(self.max_payload + 1))
        params = Signal(40)             # the first five payload bytes, byte 0 in bits 0..7; bytes
                                        # past the payload keep older values, which no command reads
        value_too_large = Signal()      # some payload byte exceeds 2**input_bits - 1
        byte_in_word = Signal(range(self.word_bytes))
        word_count = Signal(range(self.max_payload + 1))
        crc_index = Signal()

        # -- response fields --------------------------------------------------------------------
        response_code = Signal(8)
        response_length = Signal(16)
        value = Signal(32)              # register value, STATUS, or ID of a response
        result_class = Signal(self.class_bits)
        result_steps = Signal(8)
        result_cycles = Signal(32)
        last_error = Signal(8)
        error_count = Signal(16)
        frame_count = Signal(16)

        # -- execution counters -----------------------------------------------------------------
        beat = Signal(range(max(arch.n_in, self.max_payload) + 1))
        beats_sent = Signal()
        watchdog = Signal(range(self.cycle_limit + 2))
        mask_word = Signal(32)
        mask_byte = Signal(range(self.word_bytes + 1))
        words_left = Signal(range(self.max_payload + 1))
        read_pointer = Signal(range(self.max_payload + 1))

        # A WRITE_MASK fits when its first word lies below ``words`` and its words end there.
        mask_start = params[0:32]
        address_bits = bit_length(arch.words)
        mask_end = Signal(max(address_bits, len(word_count)) + 1)
        mask_in_range = Signal()
        m.d.comb += [
            mask_end.eq(mask_start[:address_bits] + word_count),
            mask_in_range.eq((mask_start[address_bits:] == 0) & (mask_end <= arch.words)),
        ]

        m.d.comb += buf_rd.en.eq(0)      # the read port keeps its data unless a state reads
        m.d.comb += self.out_ready.eq(1)  # a result that arrives after an abort is dropped
        m.d.comb += self.in_data.eq(buf_rd.data[:arch.input_bits])

        def respond(code, length_bytes=0):
            m.d.sync += [response_code.eq(code), response_length.eq(length_bytes)]
            m.next = "RESPOND"

        # The register bus is driven from flip-flops, so the core's write checks do not add to
        # the bridge's decode path: an access reaches the core one cycle after its state.
        m.d.sync += [self.reg_we.eq(0), self.reg_re.eq(0)]

        def reg_write(address, data):
            m.d.sync += [self.reg_we.eq(1), self.reg_addr.eq(address), self.reg_wdata.eq(data)]

        def reg_read(address):
            m.d.sync += [self.reg_re.eq(1), self.reg_addr.eq(address)]

        def start_frame():
            m.d.comb += [rx_crc.start.eq(1)]
            m.d.sync += [command.eq(0), header_index.eq(0), payload_index.eq(0),
                         value_too_large.eq(0), byte_in_word.eq(0), word_count.eq(0),
                         crc_index.eq(0)]
            m.next = "HEADER"

        with m.FSM():
            # -- frame reception ----------------------------------------------------------------
            with m.State("IDLE"):
                with m.If(self.rx_valid & (self.rx_data == protocol.REQUEST_START)):
                    start_frame()
                with m.Elif(byte_seen):
                    m.d.sync += command.eq(0)
                    m.next = "JUNK"

            with m.State("JUNK"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.rx_valid & (self.rx_data == protocol.REQUEST_START)):
                    start_frame()
                with m.Elif(quiet):
                    respond(ErrorCode.SYNC)

            with m.State("HEADER"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.rx_error):
                    m.d.sync += response_code.eq(ErrorCode.UART)
                    m.next = "DISCARD"
                with m.Elif(self.rx_valid):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += header_index.eq(header_index + 1)
                    with m.Switch(header_index):
                        with m.Case(0):
                            m.d.sync += command.eq(self.rx_data)
                        with m.Case(1):
                            m.d.sync += length[0:8].eq(self.rx_data)
                        with m.Case(2):
                            m.d.sync += length[8:16].eq(self.rx_data)
                            full_length = Cat(length[0:8], self.rx_data)
                            with m.If(full_length > self.max_payload):
                                m.d.sync += response_code.eq(ErrorCode.LENGTH)
                                m.next = "DISCARD"
                            with m.Elif(full_length == 0):
                                m.next = "CRC"
                            with m.Else():
                                m.next = "PAYLOAD"
                with m.Elif(quiet):
                    respond(ErrorCode.TIMEOUT)

            with m.State("PAYLOAD"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [buf_wr.addr.eq(payload_index), buf_wr.data.eq(self.rx_data)]
                with m.If(self.rx_error):
                    m.d.sync += response_code.eq(ErrorCode.UART)
                    m.next = "DISCARD"
                with m.Elif(self.rx_valid):
                    m.d.comb += [rx_crc.valid.eq(1), buf_wr.en.eq(1)]
                    m.d.sync += payload_index.eq(payload_index + 1)
                    with m.Switch(payload_index):
                        for n in range(5):
                            with m.Case(n):
                                m.d.sync += params[8 * n:8 * n + 8].eq(self.rx_data)
                    if arch.input_bits < 8:
                        with m.If(self.rx_data[arch.input_bits:] != 0):
                            m.d.sync += value_too_large.eq(1)
                    with m.If(payload_index >= 4):
                        with m.If(byte_in_word == self.word_bytes - 1):
                            m.d.sync += [byte_in_word.eq(0), word_count.eq(word_count + 1)]
                        with m.Else():
                            m.d.sync += byte_in_word.eq(byte_in_word + 1)
                    with m.If(payload_index == length - 1):
                        m.next = "CRC"
                with m.Elif(quiet):
                    respond(ErrorCode.TIMEOUT)

            with m.State("CRC"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.rx_error):
                    m.d.sync += response_code.eq(ErrorCode.UART)
                    m.next = "DISCARD"
                with m.Elif(self.rx_valid):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += crc_index.eq(1)
                    with m.If(crc_index == 1):
                        m.next = "CHECK"
                with m.Elif(quiet):
                    respond(ErrorCode.TIMEOUT)

            with m.State("DISCARD"):
                # Drop bytes until the line is quiet, then report the error kept in
                # response_code: the rest of the frame cannot be trusted to find its end.
                m.d.comb += self.busy.eq(1)
                with m.If(quiet):
                    respond(response_code)

            # -- validation ---------------------------------------------------------------------
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.If(~rx_crc.match_detected):
                    respond(ErrorCode.CRC)
                with m.Else():
                    with m.Switch(command):
                        with m.Case(Command.INFO, Command.STATUS):
                            with m.If(length != 0):
                                respond(ErrorCode.LENGTH)
                            with m.Elif(command == Command.INFO):
                                m.next = "INFO"
                            with m.Else():
                                m.next = "STATUS"
                        with m.Case(Command.READ_REG):
                            with m.If(length != 1):
                                respond(ErrorCode.LENGTH)
                            with m.Else():
                                m.next = "READ_REG"
                        with m.Case(Command.WRITE_REG):
                            with m.If(length != 5):
                                respond(ErrorCode.LENGTH)
                            with m.Else():
                                m.next = "WRITE_CLEAR"
                        with m.Case(Command.WRITE_MASK):
                            with m.If((word_count == 0) | (byte_in_word != 0)):
                                respond(ErrorCode.LENGTH)
                            with m.Else():
                                m.next = "MASK_RANGE"
                        with m.Case(Command.INFER):
                            with m.If(length != arch.n_in):
                                respond(ErrorCode.LENGTH)
                            with m.Elif(value_too_large):
                                respond(ErrorCode.VALUE)
                            with m.Else():
                                m.d.sync += [beat.eq(0), beats_sent.eq(0), watchdog.eq(0)]
                                m.next = "SAMPLE_LOAD"
                        with m.Default():
                            respond(ErrorCode.COMMAND)

            # -- INFO, STATUS, READ_REG: one register read ----------------------------------------
            with m.State("INFO"):
                m.d.comb += self.busy.eq(1)
                reg_read(CoreRegister.ID)
                m.next = "INFO_WAIT"
            with m.State("INFO_WAIT"):
                m.d.comb += self.busy.eq(1)
                m.next = "INFO_CAPTURE"
            with m.State("INFO_CAPTURE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += value.eq(self.reg_rdata)
                respond(ErrorCode.OK, protocol.INFO_BYTES)

            with m.State("STATUS"):
                m.d.comb += self.busy.eq(1)
                reg_read(CoreRegister.STATUS)
                m.next = "STATUS_WAIT"
            with m.State("STATUS_WAIT"):
                m.d.comb += self.busy.eq(1)
                m.next = "STATUS_CAPTURE"
            with m.State("STATUS_CAPTURE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += value.eq(self.reg_rdata)
                respond(ErrorCode.OK, protocol.STATUS_BYTES)

            with m.State("READ_REG"):
                m.d.comb += self.busy.eq(1)
                reg_read(params[0:8])
                m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.d.comb += self.busy.eq(1)
                m.next = "READ_CAPTURE"
            with m.State("READ_CAPTURE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += value.eq(self.reg_rdata)
                respond(ErrorCode.OK, 4)

            # -- WRITE_REG: clear the sticky flags, write, read STATUS back -----------------------
            with m.State("WRITE_CLEAR"):
                m.d.comb += self.busy.eq(1)
                reg_write(CoreRegister.CONTROL, CoreRegister.CONTROL_CLEAR_STICKY)
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += self.busy.eq(1)
                reg_write(params[0:8], params[8:40])
                m.next = "WRITE_STATUS"
            with m.State("WRITE_STATUS"):
                m.d.comb += self.busy.eq(1)
                reg_read(CoreRegister.STATUS)
                m.next = "WRITE_WAIT"
            with m.State("WRITE_WAIT"):
                m.d.comb += self.busy.eq(1)
                m.next = "WRITE_CAPTURE"
            with m.State("WRITE_CAPTURE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += value.eq(self.reg_rdata)
                with m.If(self.reg_rdata & CoreRegister.STATUS_WRITE_REJECTED):
                    respond(ErrorCode.REJECTED)
                with m.Else():
                    respond(ErrorCode.OK, 4)

            # -- WRITE_MASK: MASK_ADDR, then one MASK_DATA write per word ------------------------
            with m.State("MASK_RANGE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~mask_in_range):
                    respond(ErrorCode.VALUE)
                with m.Else():
                    m.d.sync += [words_left.eq(word_count), read_pointer.eq(4)]
                    m.next = "MASK_CLEAR"
            with m.State("MASK_CLEAR"):
                m.d.comb += self.busy.eq(1)
                reg_write(CoreRegister.CONTROL, CoreRegister.CONTROL_CLEAR_STICKY)
                m.next = "MASK_ADDR"
            with m.State("MASK_ADDR"):
                m.d.comb += self.busy.eq(1)
                reg_write(CoreRegister.MASK_ADDR, mask_start)
                m.d.sync += mask_byte.eq(0)
                m.next = "MASK_READ"
            with m.State("MASK_READ"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [buf_rd.addr.eq(read_pointer), buf_rd.en.eq(1)]
                m.d.sync += [read_pointer.eq(read_pointer + 1), mask_byte.eq(mask_byte + 1)]
                m.next = "MASK_SHIFT"
            with m.State("MASK_SHIFT"):
                m.d.comb += self.busy.eq(1)
                # Bytes arrive least significant first; shift each in from the top.
                shifted = Cat(mask_word[8:8 * self.word_bytes], buf_rd.data)
                m.d.sync += mask_word.eq(shifted)
                with m.If(mask_byte == self.word_bytes):
                    m.next = "MASK_DATA"
                with m.Else():
                    m.next = "MASK_READ"
            with m.State("MASK_DATA"):
                m.d.comb += self.busy.eq(1)
                reg_write(CoreRegister.MASK_DATA, mask_word[:arch.lanes])
                m.d.sync += [words_left.eq(words_left - 1), mask_byte.eq(0)]
                with m.If(words_left == 1):
                    m.next = "WRITE_STATUS"
                with m.Else():
                    m.next = "MASK_READ"

            # -- INFER: stream the sample, wait for the result ----------------------------------
            with m.State("SAMPLE_LOAD"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [buf_rd.addr.eq(beat), buf_rd.en.eq(1)]
                m.d.sync += watchdog.eq(watchdog + 1)
                m.next = "SAMPLE_SEND"
            with m.State("SAMPLE_SEND"):
                m.d.comb += [self.busy.eq(1), self.in_valid.eq(1)]
                m.d.sync += watchdog.eq(watchdog + 1)
                with m.If(self.in_ready):
                    m.d.sync += [beat.eq(beat + 1), beats_sent.eq(1)]
                    with m.If(beat == arch.n_in - 1):
                        m.d.sync += watchdog.eq(0)
                        m.next = "RESULT"
                    with m.Else():
                        m.next = "SAMPLE_LOAD"
                with m.Elif(watchdog >= self.cycle_limit):
                    with m.If(beats_sent):
                        m.next = "ABORT"
                    with m.Else():
                        respond(ErrorCode.NOT_READY)
            with m.State("RESULT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += watchdog.eq(watchdog + 1)
                with m.If(self.out_valid):
                    m.d.sync += [result_class.eq(self.out_class), result_steps.eq(self.out_steps),
                                 result_cycles.eq(self.out_cycles),
                                 self.last_class.eq(self.out_class)]
                    respond(ErrorCode.OK, protocol.INFER_BYTES)
                with m.Elif(watchdog >= self.cycle_limit):
                    m.next = "ABORT"
            with m.State("ABORT"):
                m.d.comb += self.busy.eq(1)
                reg_write(CoreRegister.CONTROL, CoreRegister.CONTROL_ABORT)
                respond(ErrorCode.CORE_TIMEOUT)

            # -- response -----------------------------------------------------------------------
            with m.State("RESPOND"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += tx_crc.start.eq(1)
                m.d.sync += payload_index.eq(0)
                with m.If(response_code != ErrorCode.OK):
                    m.d.sync += response_length.eq(0)
                m.next = "SEND_START"

            with m.State("SEND_START"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                             self.tx.payload.eq(protocol.RESPONSE_START)]
                with m.If(self.tx.ready):
                    m.d.sync += header_index.eq(0)
                    m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                header = Array([command, response_code, response_length[0:8], response_length[8:16]])
                m.d.comb += [self.tx.payload.eq(header[header_index]),
                             tx_crc.data.eq(header[header_index])]
                with m.If(self.tx.ready):
                    m.d.comb += tx_crc.valid.eq(1)
                    m.d.sync += header_index.eq(header_index + 1)
                    with m.If(header_index == 3):
                        with m.If(response_length == 0):
                            m.d.sync += crc_index.eq(0)
                            m.next = "SEND_CRC"
                        with m.Else():
                            m.next = "SEND_PAYLOAD"
            with m.State("SEND_PAYLOAD"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                payload_byte = self._payload_byte(m, command, payload_index, value, result_class,
                                                  result_steps, result_cycles, last_error,
                                                  error_count, frame_count)
                m.d.comb += [self.tx.payload.eq(payload_byte), tx_crc.data.eq(payload_byte)]
                with m.If(self.tx.ready):
                    m.d.comb += tx_crc.valid.eq(1)
                    m.d.sync += payload_index.eq(payload_index + 1)
                    with m.If(payload_index == response_length - 1):
                        m.d.sync += crc_index.eq(0)
                        m.next = "SEND_CRC"
            with m.State("SEND_CRC"):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1)]
                m.d.comb += self.tx.payload.eq(Mux(crc_index, tx_crc.crc[0:8], tx_crc.crc[8:16]))
                with m.If(self.tx.ready):
                    m.d.sync += crc_index.eq(1)
                    with m.If(crc_index == 1):
                        # Count the response once it is sent, so STATUS reports the ones before.
                        with m.If(response_code != ErrorCode.OK):
                            m.d.sync += [last_error.eq(response_code),
                                         error_count.eq(error_count + 1), self.error.eq(1)]
                        with m.Else():
                            m.d.sync += [frame_count.eq(frame_count + 1), self.error.eq(0)]
                        m.next = "IDLE"

        return m

    def _payload_byte(self, m, command, index, value, result_class, result_steps, result_cycles,
                      last_error, error_count, frame_count) -> Signal:
        """Return the response payload byte ``index`` of the OK response to ``command``."""
        byte = Signal(8)

        def as_bytes(signal, count):
            return [signal.as_unsigned()[8 * i:8 * i + 8] if 8 * i < len(signal) else C(0, 8)
                    for i in range(count)]

        info_bytes = [C(b, 8) for b in self.info.pack()]
        info_bytes[1:5] = as_bytes(value, 4)  # core_id comes from the ID register
        infer_bytes = (as_bytes(result_class, 2) + as_bytes(result_steps, 1)
                       + as_bytes(result_cycles, 4))
        status_bytes = (as_bytes(value, 4) + as_bytes(last_error, 1) + as_bytes(error_count, 2)
                        + as_bytes(frame_count, 2))

        def select(table):
            with m.If(index < len(table)):
                m.d.comb += byte.eq(Array(table)[index[:bit_length(len(table) - 1) or 1]])

        with m.Switch(command):
            with m.Case(Command.INFO):
                select(info_bytes)
            with m.Case(Command.STATUS):
                select(status_bytes)
            with m.Case(Command.INFER):
                select(infer_bytes)
            with m.Default():
                select(as_bytes(value, 4))
        return byte
