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

from hdl.regs import Control, Register, Status, exceeds
from hdl.synthesis import RDWR_DONT_CARE_PREFIX
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
        The INFER response reads ``out_class``, ``out_steps`` and ``out_cycles`` while it is
        sent, after the handshake, so the core must keep them until the next sample starts, as
        ``hdl.core.Accelerator`` does.
    reg_addr, reg_wdata, reg_we, reg_re, reg_rdata : register bus of the core. The strobes come
        from flip-flops, the address and the write data from flip-flops through at most one
        LUT. The bridge reads ``reg_rdata`` from the second cycle after it raised ``reg_re``
        until the response is sent, so the core must keep the value until the next read, as
        ``hdl.regs.RegisterFile`` does.
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
        word_bytes = self.word_bytes

        # -- receive buffer and CRC ---------------------------------------------------------------
        # The INFO constants sit in the buffer above the payload, at a multiple of 32 so that
        # the payload index gives the low address bits. Bytes 1..4, the core ID, are 0 there,
        # because the ID comes from the core's ID register.
        info_base = 32 * -(-self.max_payload // 32)
        info_init = bytearray(self.info.pack())
        info_init[1:5] = bytes(4)
        buffer = Memory(shape=8, depth=info_base + len(info_init),
                        init=[0] * info_base + list(info_init))
        # No state reads the buffer while PAYLOAD writes it, so a board build may drop the
        # logic that gives a same-cycle read the old data.
        m.submodules[RDWR_DONT_CARE_PREFIX + "buffer"] = buffer
        buf_wr = buffer.write_port()
        buf_rd = buffer.read_port(transparent_for=())
        # The block RAM's clock-to-output delay is most of a 100 MHz cycle on the ECP5, so the
        # mask words and the response take its bytes from this copy, one cycle later.
        buffer_byte = Signal(8)
        m.d.sync += buffer_byte.eq(buf_rd.data)
        # One CRC unit serves both directions, because a response starts only after its
        # request ends.
        m.submodules.crc = crc = catalog.CRC16_CCITT_FALSE(8).create()
        m.d.comb += crc.data.eq(self.rx_data)

        # -- timer: inter-byte timeout while receiving, core watchdog while executing -----------
        # ``quiet`` and ``core_late`` are flip-flops equal to ``timer == timeout_cycles`` and
        # ``timer == cycle_limit``. Each timer update sets them from the timer's old value, so
        # no comparator lies between the timer and the state machine.
        timer_width = bit_length(max(self.timeout_cycles, self.cycle_limit))
        timer = Signal(timer_width)
        quiet = Signal()
        core_late = Signal(init=self.cycle_limit == 0)
        timer_clear = Signal()          # set by a state that starts a watchdog phase
        executing = Signal()
        byte_seen = Signal()
        m.d.comb += byte_seen.eq(self.rx_valid | self.rx_error)

        def timer_reset():
            m.d.sync += [timer.eq(0), quiet.eq(0), core_late.eq(self.cycle_limit == 0)]

        def timer_count():
            # ``timer + 1`` wraps at 2**timer_width, and so do the compared values.
            m.d.sync += [timer.eq(timer + 1),
                         quiet.eq(timer == self.timeout_cycles - 1),
                         core_late.eq(timer == (self.cycle_limit - 1) % 2**timer_width)]

        # The timer saturates at the limit of the current phase.
        with m.If(timer_clear):
            timer_reset()
        with m.Elif(executing):
            with m.If(~core_late):
                timer_count()
        with m.Elif(byte_seen):
            timer_reset()
        with m.Elif(~quiet):
            timer_count()

        # -- request fields -----------------------------------------------------------------------
        command = Signal(8)
        # One flag per known command, set with ``command``, so later tests read a single bit.
        command_is = {c: Signal(name=f"command_is_{c.name.lower()}") for c in Command}
        length = Signal(range(self.max_payload + 1))
        value_too_large = Signal()      # some payload byte exceeds 2**input_bits - 1
        byte_in_word = Signal(range(word_bytes))
        crc_index = Signal()
        # Set bits of ``fetched`` mark valid data at ``pointer``: bit 0 in ``buf_rd.data``,
        # bit 1 in ``buffer_byte``, bit 2 (the response byte) in ``payload``.
        fetched = Signal(3)
        payload = Signal(8)
        # The first payload bytes shift in from the top, at most five of them, and the first
        # one is also copied into bits 0..7. So READ_REG and WRITE_REG leave their address in
        # bits 0..7, WRITE_REG its value in bits 8..39, and WRITE_MASK, which stops after four
        # bytes, its first word in bits 8..39. Bits 8..39 drive the register bus's write data,
        # so the mask words are shifted into them as well.
        params = Signal(40)

        # -- response fields ----------------------------------------------------------------------
        code_shape = range(max(ErrorCode) + 1)
        response_code = Signal(code_shape)
        # Payload length of the response: fixed by the command for OK, 0 for an error.
        response_length = Signal(range(max(protocol.INFO_BYTES, protocol.STATUS_BYTES,
                                           protocol.INFER_BYTES, 4) + 1))
        with m.If(response_code == ErrorCode.OK):
            with m.If(command_is[Command.INFO]):
                m.d.comb += response_length.eq(protocol.INFO_BYTES)
            with m.Elif(command_is[Command.STATUS]):
                m.d.comb += response_length.eq(protocol.STATUS_BYTES)
            with m.Elif(command_is[Command.INFER]):
                m.d.comb += response_length.eq(protocol.INFER_BYTES)
            with m.Else():
                m.d.comb += response_length.eq(4)
        last_error = Signal(code_shape)
        error_count = Signal(16)
        frame_count = Signal(16)

        # -- buffer pointer -----------------------------------------------------------------------
        # Indexes the request header and payload, the mask words and sample beats read back from
        # the buffer, and the response header and payload.
        pointer = Signal(range(max(arch.n_in, self.max_payload, protocol.INFO_BYTES) + 1))
        pointer_next = Signal.like(pointer)
        m.d.comb += pointer_next.eq(pointer + 1)

        # A WRITE_MASK carries whole words after its first-word field, at least one, and fits
        # when its first word lies below ``words`` and its words end there. The words are
        # counted while they arrive, except for 1, 2 or 4 bytes a word, where the count is
        # ``(length - 4) / word_bytes`` and the 4-byte field is a whole number of words.
        mask_start = params[8:40]
        address_bits = bit_length(arch.words)
        word_shift = (word_bytes - 1).bit_length()
        counting = word_bytes != 1 << word_shift
        mask_words_valid = Signal()
        if counting:
            word_count = Signal(range(self.max_payload + 1))
            m.d.comb += mask_words_valid.eq((word_count != 0) & (byte_in_word == 0))
            mask_words, mask_bound = word_count, arch.words
        else:
            # ``length >= 4 + word_bytes`` without a carry chain: 4 + word_bytes <= 8.
            long_enough = (length[3:] != 0) | Cat(*(length[:3] == low
                                                    for low in range(4 + word_bytes, 8))).any()
            m.d.comb += mask_words_valid.eq(long_enough & (length[:word_shift] == 0))
            mask_words, mask_bound = length >> word_shift, arch.words + 4 // word_bytes
        # Registered, because the payload is complete at least two cycles before CHECK reads it.
        mask_end = Signal(max(address_bits, len(mask_words)) + 1)
        mask_in_range = Signal()
        m.d.comb += mask_end.eq(mask_start[:address_bits] + mask_words)
        m.d.sync += mask_in_range.eq((mask_start[address_bits:] == 0)
                                     & ~exceeds(mask_end, mask_bound))

        m.d.comb += buf_rd.en.eq(0)      # the read port keeps its data unless a state reads
        m.d.comb += self.out_ready.eq(1)  # a result that arrives after an abort is dropped
        m.d.comb += self.in_data.eq(buf_rd.data[:arch.input_bits])

        # -- register bus -------------------------------------------------------------------------
        # The strobes are flip-flops, and the address and the write data are flip-flops through
        # one multiplexer, so the core's write checks do not add to the bridge's decode path.
        # The address is a fixed register or the request's address byte, params bits 0..7. The
        # write data is params bits 8..39, except that a CONTROL write sets bits 0 and 1 from
        # ``control_bits``. Bits 2..31 of a CONTROL write carry whatever params holds, which
        # the core ignores.
        control_write = Signal()
        control_bits = Signal(2)
        address_from_params = Signal()
        fixed_address = Signal(range(max(CoreRegister.ID, CoreRegister.STATUS,
                                          CoreRegister.CONTROL, CoreRegister.MASK_ADDR,
                                          CoreRegister.MASK_DATA) + 1))
        m.d.sync += [self.reg_we.eq(0), self.reg_re.eq(0)]
        m.d.comb += [
            self.reg_addr.eq(Mux(address_from_params, params[0:8], fixed_address)),
            self.reg_wdata.eq(Cat(Mux(control_write, control_bits, params[8:10]),
                                  params[10:40])),
        ]

        def set_address(address):
            # ``None`` selects the address byte of the request.
            if address is None:
                m.d.sync += address_from_params.eq(1)
            else:
                m.d.sync += [address_from_params.eq(0), fixed_address.eq(address)]

        def reg_write(address, control=None):
            set_address(address)
            m.d.sync += [self.reg_we.eq(1), control_write.eq(control is not None)]
            if control is not None:
                m.d.sync += control_bits.eq(control)

        def reg_read(address):
            set_address(address)
            m.d.sync += self.reg_re.eq(1)

        def respond(code):
            m.d.sync += response_code.eq(code)
            m.next = "RESPOND"

        def start_frame():
            m.d.comb += crc.start.eq(1)
            m.d.sync += [command.eq(0), pointer.eq(0), value_too_large.eq(0),
                         *(flag.eq(0) for flag in command_is.values()),
                         byte_in_word.eq(0), crc_index.eq(0)]
            if counting:
                m.d.sync += word_count.eq(0)
            m.next = "HEADER"

        with m.FSM() as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

            # -- frame reception ------------------------------------------------------------------
            with m.State("IDLE"):
                with m.If(self.rx_valid & (self.rx_data == protocol.REQUEST_START)):
                    start_frame()
                with m.Elif(byte_seen):
                    m.d.sync += [command.eq(0), *(flag.eq(0) for flag in command_is.values())]
                    m.next = "JUNK"

            with m.State("JUNK"):
                with m.If(self.rx_valid & (self.rx_data == protocol.REQUEST_START)):
                    start_frame()
                with m.Elif(quiet):
                    respond(ErrorCode.SYNC)

            with m.State("HEADER"):
                with m.If(self.rx_error):
                    m.d.sync += response_code.eq(ErrorCode.UART)
                    m.next = "DISCARD"
                with m.Elif(self.rx_valid):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += pointer.eq(pointer_next)
                    with m.Switch(pointer[:2]):
                        with m.Case(0):
                            m.d.sync += command.eq(self.rx_data)
                            for c, flag in command_is.items():
                                m.d.sync += flag.eq(self.rx_data == c)
                        with m.Case(1):
                            m.d.sync += length.eq(self.rx_data)
                        with m.Case(2):
                            m.d.sync += [length[8:].eq(self.rx_data), pointer.eq(0)]
                            full_length = Cat(length[0:8], self.rx_data)
                            with m.If(exceeds(full_length, self.max_payload)):
                                m.d.sync += response_code.eq(ErrorCode.LENGTH)
                                m.next = "DISCARD"
                            with m.Elif(full_length == 0):
                                m.next = "CRC"
                            with m.Else():
                                m.next = "PAYLOAD"
                with m.Elif(quiet):
                    respond(ErrorCode.TIMEOUT)

            with m.State("PAYLOAD"):
                m.d.comb += [buf_wr.addr.eq(pointer), buf_wr.data.eq(self.rx_data)]
                with m.If(self.rx_error):
                    m.d.sync += response_code.eq(ErrorCode.UART)
                    m.next = "DISCARD"
                with m.Elif(self.rx_valid):
                    m.d.comb += [crc.valid.eq(1), buf_wr.en.eq(1)]
                    m.d.sync += pointer.eq(pointer_next)
                    with m.If((pointer[2:] == 0)
                              | ((pointer == 4) & ~command_is[Command.WRITE_MASK])):
                        m.d.sync += params.eq(Cat(params[8:], self.rx_data))
                    with m.If(pointer == 0):
                        m.d.sync += params[0:8].eq(self.rx_data)
                    if arch.input_bits < 8:
                        with m.If(self.rx_data[arch.input_bits:] != 0):
                            m.d.sync += value_too_large.eq(1)
                    if counting:
                        with m.If(pointer[2:] != 0):
                            with m.If(byte_in_word == word_bytes - 1):
                                m.d.sync += [byte_in_word.eq(0), word_count.eq(word_count + 1)]
                            with m.Else():
                                m.d.sync += byte_in_word.eq(byte_in_word + 1)
                    with m.If(pointer_next == length):
                        m.next = "CRC"
                with m.Elif(quiet):
                    respond(ErrorCode.TIMEOUT)

            with m.State("CRC"):
                with m.If(self.rx_error):
                    m.d.sync += response_code.eq(ErrorCode.UART)
                    m.next = "DISCARD"
                with m.Elif(self.rx_valid):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += crc_index.eq(1)
                    with m.If(crc_index == 1):
                        m.next = "CHECK"
                with m.Elif(quiet):
                    respond(ErrorCode.TIMEOUT)

            with m.State("DISCARD"):
                # Drop bytes until the line is quiet, then report the error kept in
                # response_code: the rest of the frame cannot be trusted to find its end.
                with m.If(quiet):
                    respond(response_code)

            # -- validation; INFO, STATUS and READ_REG read one register --------------------------
            with m.State("CHECK"):
                with m.If(~crc.match_detected):
                    respond(ErrorCode.CRC)
                with m.Else():
                    # The value of a register read here is valid two cycles later, long before
                    # the response payload is sent.
                    reads = [(Command.INFO, 0, CoreRegister.ID),
                             (Command.STATUS, 0, CoreRegister.STATUS),
                             (Command.READ_REG, 1, None)]
                    for index, (read_command, read_length, address) in enumerate(reads):
                        with (m.If if index == 0 else m.Elif)(command_is[read_command]):
                            with m.If(length != read_length):
                                respond(ErrorCode.LENGTH)
                            with m.Else():
                                reg_read(address)
                                respond(ErrorCode.OK)
                    with m.Elif(command_is[Command.WRITE_REG]):
                        with m.If(length != 5):
                            respond(ErrorCode.LENGTH)
                        with m.Else():
                            reg_write(CoreRegister.CONTROL, CoreRegister.CONTROL_CLEAR_STICKY)
                            m.next = "WRITE"
                    with m.Elif(command_is[Command.WRITE_MASK]):
                        with m.If(~mask_words_valid):
                            respond(ErrorCode.LENGTH)
                        with m.Elif(~mask_in_range):
                            respond(ErrorCode.VALUE)
                        with m.Else():
                            reg_write(CoreRegister.CONTROL, CoreRegister.CONTROL_CLEAR_STICKY)
                            m.next = "MASK_ADDR"
                    with m.Elif(command_is[Command.INFER]):
                        with m.If(length != arch.n_in):
                            respond(ErrorCode.LENGTH)
                        with m.Elif(value_too_large):
                            respond(ErrorCode.VALUE)
                        with m.Else():
                            m.d.sync += pointer.eq(0)
                            m.d.comb += timer_clear.eq(1)
                            m.next = "SAMPLE_LOAD"
                    with m.Else():
                        respond(ErrorCode.COMMAND)

            # -- WRITE_REG: write, then read STATUS back -----------------------------------------
            with m.State("WRITE"):
                reg_write(None)
                m.next = "WRITE_STATUS"
            with m.State("WRITE_STATUS"):
                reg_read(CoreRegister.STATUS)
                m.next = "WRITE_WAIT"
            with m.State("WRITE_WAIT"):
                m.next = "WRITE_CAPTURE"
            with m.State("WRITE_CAPTURE"):
                with m.If(self.reg_rdata & CoreRegister.STATUS_WRITE_REJECTED):
                    respond(ErrorCode.REJECTED)
                with m.Else():
                    respond(ErrorCode.OK)

            # -- WRITE_MASK: MASK_ADDR, then one MASK_DATA write per word ------------------------
            with m.State("MASK_ADDR"):
                reg_write(CoreRegister.MASK_ADDR)
                m.d.sync += pointer.eq(4)
                m.next = "MASK_READ"
            with m.State("MASK_READ"):
                m.d.comb += [buf_rd.addr.eq(pointer), buf_rd.en.eq(1)]
                m.d.sync += pointer.eq(pointer_next)
                m.next = "MASK_WAIT"
            with m.State("MASK_WAIT"):
                m.next = "MASK_SHIFT"
            with m.State("MASK_SHIFT"):
                # Bytes arrive least significant first; each shifts in from the top of the word.
                # Bits of the last byte past ``lanes`` are dropped.
                word_bits = 8 * word_bytes
                incoming = Signal(8)
                m.d.comb += incoming.eq(buffer_byte)
                top_bits = arch.lanes - 8 * (word_bytes - 1)
                if top_bits < 8:
                    with m.If(byte_in_word == word_bytes - 1):
                        m.d.comb += incoming[top_bits:].eq(0)
                # The MASK_ADDR write took its data two cycles earlier, so the start word's
                # bits above the mask word can be cleared now.
                m.d.sync += params[8:40].eq(Cat(params[16:8 + word_bits], incoming))
                with m.If(byte_in_word == word_bytes - 1):
                    m.d.sync += byte_in_word.eq(0)
                    reg_write(CoreRegister.MASK_DATA)
                    with m.If(pointer == length):
                        m.next = "WRITE_STATUS"
                    with m.Else():
                        m.next = "MASK_READ"
                with m.Else():
                    m.d.sync += byte_in_word.eq(byte_in_word + 1)
                    m.next = "MASK_READ"

            # -- INFER: stream the sample, wait for the result ----------------------------------
            with m.State("SAMPLE_LOAD"):
                m.d.comb += [executing.eq(1), buf_rd.addr.eq(pointer), buf_rd.en.eq(1)]
                m.next = "SAMPLE_SEND"
            with m.State("SAMPLE_SEND"):
                m.d.comb += [executing.eq(1), self.in_valid.eq(1)]
                with m.If(self.in_ready):
                    m.d.sync += pointer.eq(pointer_next)
                    with m.If(pointer == arch.n_in - 1):
                        m.d.comb += timer_clear.eq(1)
                        m.next = "RESULT"
                    with m.Else():
                        m.next = "SAMPLE_LOAD"
                with m.Elif(core_late):
                    with m.If(pointer != 0):
                        reg_write(CoreRegister.CONTROL, CoreRegister.CONTROL_ABORT)
                        respond(ErrorCode.CORE_TIMEOUT)
                    with m.Else():
                        respond(ErrorCode.NOT_READY)
            with m.State("RESULT"):
                m.d.comb += executing.eq(1)
                with m.If(self.out_valid):
                    # The response reads the result from the core's outputs, which hold it
                    # until the next sample.
                    m.d.sync += self.last_class.eq(self.out_class)
                    respond(ErrorCode.OK)
                with m.Elif(core_late):
                    reg_write(CoreRegister.CONTROL, CoreRegister.CONTROL_ABORT)
                    respond(ErrorCode.CORE_TIMEOUT)

            # -- response -------------------------------------------------------------------------
            with m.State("RESPOND"):
                m.d.comb += crc.start.eq(1)
                m.d.sync += pointer.eq(0)
                m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                header = Array([C(protocol.RESPONSE_START, 8), command, response_code,
                                response_length, C(0, 8)])
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(header[pointer[:3]]),
                             crc.data.eq(self.tx.payload)]
                with m.If(self.tx.ready):
                    m.d.comb += crc.valid.eq(pointer[:3] != 0)
                    m.d.sync += pointer.eq(pointer_next)
                    with m.If(pointer[:3] == 4):
                        m.d.sync += [pointer.eq(0), crc_index.eq(0), fetched.eq(0)]
                        with m.If(response_length == 0):
                            m.next = "SEND_CRC"
                        with m.Else():
                            m.next = "SEND_PAYLOAD"
            with m.State("SEND_PAYLOAD"):
                # The buffer returns the INFO byte at ``pointer`` one cycle after the address,
                # ``buffer_byte`` one cycle later, and ``payload`` registers the response byte
                # one more cycle later. So a byte is offered from the fourth cycle after the
                # pointer moved, and the transmitter and the CRC take it from a flip-flop.
                m.d.comb += [buf_rd.addr.eq(Cat(pointer[:5], C(info_base >> 5))),
                             buf_rd.en.eq(1)]
                info_byte = Mux(command_is[Command.INFO], buffer_byte, 0)
                payload_byte = self._payload_byte(m, command_is, pointer, last_error, error_count,
                                                  frame_count) | info_byte
                m.d.sync += [fetched.eq(Cat(1, fetched[:2])), payload.eq(payload_byte)]
                m.d.comb += [self.tx.valid.eq(fetched[2]), self.tx.payload.eq(payload),
                             crc.data.eq(payload)]
                with m.If(self.tx.ready & fetched[2]):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += [pointer.eq(pointer_next), fetched.eq(0)]
                    with m.If(pointer_next == response_length):
                        m.next = "SEND_CRC"
            with m.State("SEND_CRC"):
                m.d.comb += [self.tx.valid.eq(1),
                             self.tx.payload.eq(Mux(crc_index, crc.crc[0:8], crc.crc[8:16]))]
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

    def _payload_byte(self, m, command_is, index, last_error, error_count,
                      frame_count) -> Signal:
        """Return the response payload byte ``index`` of the OK response to the command whose
        flag in ``command_is`` is set.

        Register values come from ``reg_rdata`` and results from the core's result outputs,
        both held by the core until the next register read or sample.
        """
        def fields(*pairs):
            # (name, signal) pairs to a list of (key, byte) per payload byte, little-endian.
            out = []
            for name, signal, count in pairs:
                for i in range(count):
                    part = signal.as_unsigned()[8 * i:8 * i + 8] if 8 * i < len(signal) else None
                    out.append(((name, i), part))
            return out

        reg = fields(("value", self.reg_rdata, 4))
        tables = {
            Command.INFO: [(None, None)] + reg + [(None, None)] * (protocol.INFO_BYTES - 5),
            Command.STATUS: reg + fields(("last_error", last_error, 1),
                                         ("errors", error_count, 2), ("frames", frame_count, 2)),
            Command.INFER: fields(("class", self.out_class, 2), ("steps", self.out_steps, 1),
                                  ("cycles", self.out_cycles, 4)),
            None: reg,
        }
        is_command = command_is
        other = (command_is[Command.READ_REG] | command_is[Command.WRITE_REG]
                 | command_is[Command.WRITE_MASK])

        # Each source byte is selected by the (command, index) pairs where it appears.
        selects = {}
        parts = {}
        for key, table in tables.items():
            group = is_command[key] if key is not None else other
            for i, (name, part) in enumerate(table):
                if part is None:
                    continue
                selects.setdefault(name, []).append(group & (index == i))
                parts[name] = part
        terms = []
        for name, conditions in selects.items():
            select = Signal(name=f"payload_{name[0]}_{name[1]}")
            m.d.comb += select.eq(Cat(*conditions).any())
            terms.append(Mux(select, parts[name], 0))
        byte = Signal(8)
        result = terms[0]
        for term in terms[1:]:
            result = result | term
        m.d.comb += byte.eq(result)
        return byte
