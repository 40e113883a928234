"""The host register bus (section "Host interfaces of the accelerator core")."""

from __future__ import annotations

import enum

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from sw_model.model import Model
from sw_model.spec import EARLY_STOP_RULES

from .early_stop import CONF_LIMIT_BITS, SCALE_BITS
from .layout import index_bits
from .synthesis import RDWR_DONT_CARE_PREFIX

__all__ = ["Register", "RegisterFile", "ID_VALUE", "Status", "Control", "exceeds"]

ID_VALUE = 0x534E4E31  # "SNN1"
ADDR_BITS = 8
DATA_BITS = 32
COMPLETED_BITS = 16    # STATUS bits 31..16


class Register(enum.IntEnum):
    """Word addresses of the register bus."""

    ID = 0x00
    STATUS = 0x01
    CONTROL = 0x02
    ES_RULE = 0x03
    BUDGET = 0x04
    MIN_STEPS = 0x05
    MARGIN = 0x06
    CONF_LIMIT = 0x07
    SCALE_ADDR = 0x08
    SCALE_DATA = 0x09
    MASK_ADDR = 0x0A
    MASK_DATA = 0x0B
    MASK_COMMIT = 0x0C
    THRESHOLD_0 = 0x10


class Status(enum.IntFlag):
    """Bits of the ``STATUS`` register below the completed-inference count."""

    BUSY = 1 << 0
    MASK_OPEN = 1 << 1
    WRITE_REJECTED = 1 << 2
    RESULT_WAITING = 1 << 3


class Control(enum.IntFlag):
    """Bits of the ``CONTROL`` register."""

    ABORT = 1 << 0
    CLEAR_FLAGS = 1 << 1


def exceeds(value, limit: int):
    """Return whether the unsigned ``value`` is above the constant ``limit``, in LUT logic.

    Yosys maps a comparison operator to a carry chain, one logic cell per bit. Split into
    halves, the test needs only a few LUTs for a constant.
    """
    if limit < 0:
        return Const(1, 1)
    if limit >= 2 ** len(value) - 1:
        return Const(0, 1)
    if len(value) <= 4:
        return Cat(*(value == v for v in range(limit + 1, 2 ** len(value)))).any()
    half = len(value) // 2
    low, high = value[:half], value[half:]
    limit_low, limit_high = limit & (2 ** half - 1), limit >> half
    return exceeds(high, limit_high) | ((high == limit_high) & exceeds(low, limit_low))


def _within(value, low: int, high, width: int):
    """Return whether the 32-bit ``value`` lies in ``low .. high``, ``high`` below ``2**width``.

    Testing the bits above ``width`` for zero costs a few LUTs, where a 32-bit comparison costs
    a 32-bit carry chain.
    """
    small = value[:width]
    result = value[width:] == 0
    if low:
        result = result & exceeds(small, low - 1)
    if isinstance(high, int):
        return result & ~exceeds(small, high)
    return result & (small <= high)


class RegisterFile(wiring.Component):
    """Run-time settings, mask writes and status behind a simple word-addressed bus.

    A write (``we`` high) takes effect at the end of its cycle. ``rdata`` keeps the value read
    by the last ``re`` from the cycle after it until the next ``re``; write-only and unused
    addresses read 0. A write is ignored and sets the sticky ``STATUS`` bit 2 when an inference
    runs (every address but ``CONTROL``), when the value is out of range (``ES_RULE`` above 2,
    ``BUDGET`` outside ``1 .. T_max``, ``MIN_STEPS`` outside ``1 .. BUDGET``, ``MARGIN`` or
    ``CONF_LIMIT`` wider than their field, a ``SCALE_ADDR`` or ``MASK_ADDR`` past the table,
    ``SCALE_DATA`` above 16 bits or past the table, ``MASK_DATA`` wider than ``lanes`` bits, past
    the memory or with no mask update open, ``THRESHOLD_k`` outside ``1 .. 2**(V-1) - 1``), and
    when the address is read-only or unused. ``MASK_COMMIT`` with no update open does nothing.

    Register values after reset come from ``model``: thresholds and early-stop settings, with
    ``SCALE`` entries past ``len(model.early_stop.scale)`` set to 0.

    Parameters
    ----------
    model : Model
        Exported network; supplies the widths and the reset values.

    Members
    -------
    addr : In(8)
        Word address.
    wdata : In(32)
        Write data.
    we : In(1)
        Write strobe.
    re : In(1)
        Read strobe.
    rdata : Out(32)
        Read data, valid the cycle after ``re``.
    running : In(1)
        An inference runs; writes other than ``CONTROL`` are rejected.
    busy, result_waiting : In(1)
        ``STATUS`` bits 0 and 3.
    completed : In(1)
        Pulse per finished inference; counts in ``STATUS`` bits 31..16, wrapping.
    abort : Out(1)
        High in the cycle of a ``CONTROL`` write with bit 0 set.
    rule, budget, min_steps, margin, conf_limit : Out
        Early-stop settings.
    thresholds : Out(ArrayLayout(unsigned(V - 1), spiking_layers))
        ``theta_k`` of each spiking layer.
    scale_index : In(bits for T_max)
        Table index ``n - 1`` to read.
    scale : Out(16)
        ``SCALE[scale_index + 1]``, one cycle after ``scale_index``.
    mask_open : Out(1)
        A mask update is open.
    mask_we, mask_addr, mask_data : Out
        Mask memory write port, for :class:`hdl.crossbar.Crossbar`.
    """

    def __init__(self, model: Model):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a sw_model.model.Model, not {model!r}")
        self._model = model
        arch = model.arch
        super().__init__({
            "addr": In(ADDR_BITS),
            "wdata": In(DATA_BITS),
            "we": In(1),
            "re": In(1),
            "rdata": Out(DATA_BITS),
            "running": In(1),
            "busy": In(1),
            "result_waiting": In(1),
            "completed": In(1),
            "abort": Out(1),
            "rule": Out(2),
            "budget": Out(arch.timesteps.bit_length()),
            "min_steps": Out(arch.timesteps.bit_length()),
            "margin": Out(arch.output_bits),
            "conf_limit": Out(CONF_LIMIT_BITS),
            "thresholds": Out(data.ArrayLayout(unsigned(arch.membrane_bits - 1),
                                               max(1, arch.spiking_layers))),
            "scale_index": In(index_bits(arch.timesteps)),
            "scale": Out(SCALE_BITS),
            "mask_open": Out(1),
            "mask_we": Out(1),
            "mask_addr": Out(index_bits(arch.words)),
            "mask_data": Out(arch.lanes),
        })

    def elaborate(self, platform):
        m = Module()
        model = self._model
        arch = model.arch
        es = model.early_stop
        t_max = arch.timesteps

        # Reset values from the model file.
        rule = Signal(2, init=EARLY_STOP_RULES.index(es.rule))
        budget = Signal(len(self.budget), init=es.budget)
        min_steps = Signal(len(self.min_steps), init=es.min_steps)
        margin = Signal(len(self.margin), init=es.margin)
        conf_limit = Signal(CONF_LIMIT_BITS, init=es.conf_limit)
        thresholds = [Signal(arch.membrane_bits - 1, init=theta, name=f"threshold_{k}")
                      for k, theta in enumerate(model.thresholds)]
        m.d.comb += [
            self.rule.eq(rule),
            self.budget.eq(budget),
            self.min_steps.eq(min_steps),
            self.margin.eq(margin),
            self.conf_limit.eq(conf_limit),
        ]
        for k, theta in enumerate(thresholds):
            m.d.comb += self.thresholds[k].eq(theta)

        scale_init = list(es.scale)[:t_max] + [0] * (t_max - min(len(es.scale), t_max))
        scales = memory.Memory(shape=unsigned(SCALE_BITS), depth=t_max, init=scale_init)
        m.submodules[RDWR_DONT_CARE_PREFIX + "scales"] = scales
        scale_read = scales.read_port()
        scale_write = scales.write_port()
        m.d.comb += [scale_read.addr.eq(self.scale_index), self.scale.eq(scale_read.data)]
        scale_addr = Signal(range(t_max + 1))
        # Only the enable depends on the write decoding, which keeps it off the address and data
        # inputs of the table (distributed RAM on ECP5).
        m.d.comb += [scale_write.addr.eq(scale_addr), scale_write.data.eq(self.wdata)]

        mask_addr = Signal(range(arch.words + 1))
        m.d.comb += [self.mask_addr.eq(mask_addr), self.mask_data.eq(self.wdata)]

        rejected = Signal()
        completed = Signal(COMPLETED_BITS)
        with m.If(self.completed):
            m.d.sync += completed.eq(completed + 1)

        # Writes. While an inference runs, only CONTROL reaches the decoder, where `accept` is
        # high for a value in range. Every other write is rejected.
        value = self.wdata
        allowed = Signal()
        accept = Signal()
        m.d.comb += allowed.eq(~self.running | (self.addr == Register.CONTROL))
        with m.If(self.we & allowed):
            with m.Switch(self.addr):
                with m.Case(Register.CONTROL):
                    m.d.comb += accept.eq(1)
                    m.d.comb += self.abort.eq((value & Control.ABORT) != 0)
                    with m.If((value & Control.CLEAR_FLAGS) != 0):
                        m.d.sync += rejected.eq(0)
                with m.Case(Register.ES_RULE):
                    m.d.comb += accept.eq(_within(value, 0, len(EARLY_STOP_RULES) - 1, 2))
                    with m.If(accept):
                        m.d.sync += rule.eq(value)
                with m.Case(Register.BUDGET):
                    m.d.comb += accept.eq(_within(value, 1, t_max, len(budget)))
                    with m.If(accept):
                        m.d.sync += budget.eq(value)
                with m.Case(Register.MIN_STEPS):
                    m.d.comb += accept.eq(_within(value, 1, budget, len(budget)))
                    with m.If(accept):
                        m.d.sync += min_steps.eq(value)
                with m.Case(Register.MARGIN):
                    m.d.comb += accept.eq(value[len(margin):] == 0)
                    with m.If(accept):
                        m.d.sync += margin.eq(value)
                with m.Case(Register.CONF_LIMIT):
                    m.d.comb += accept.eq(value[CONF_LIMIT_BITS:] == 0)
                    with m.If(accept):
                        m.d.sync += conf_limit.eq(value)
                with m.Case(Register.SCALE_ADDR):
                    m.d.comb += accept.eq(_within(value, 0, t_max - 1, len(scale_addr)))
                    with m.If(accept):
                        m.d.sync += scale_addr.eq(value)
                with m.Case(Register.SCALE_DATA):
                    m.d.comb += accept.eq((value[SCALE_BITS:] == 0)
                                          & ~exceeds(scale_addr, t_max - 1))
                    with m.If(accept):
                        m.d.comb += scale_write.en.eq(1)
                        m.d.sync += scale_addr.eq(scale_addr + 1)
                with m.Case(Register.MASK_ADDR):
                    m.d.comb += accept.eq(_within(value, 0, arch.words - 1, len(mask_addr)))
                    with m.If(accept):
                        m.d.sync += [mask_addr.eq(value), self.mask_open.eq(1)]
                with m.Case(Register.MASK_DATA):
                    m.d.comb += accept.eq(self.mask_open & (value[arch.lanes:] == 0)
                                          & ~exceeds(mask_addr, arch.words - 1))
                    with m.If(accept):
                        m.d.comb += self.mask_we.eq(1)
                        m.d.sync += mask_addr.eq(mask_addr + 1)
                with m.Case(Register.MASK_COMMIT):
                    m.d.comb += accept.eq(1)
                    m.d.sync += self.mask_open.eq(0)
                for k, theta in enumerate(thresholds):
                    with m.Case(Register.THRESHOLD_0 + k):
                        m.d.comb += accept.eq((value[len(theta):] == 0) & (value[:len(theta)] != 0))
                        with m.If(accept):
                            m.d.sync += theta.eq(value)

        with m.If(self.we & ~(allowed & accept)):
            m.d.sync += rejected.eq(1)

        # Reads.
        with m.If(self.re):
            m.d.sync += self.rdata.eq(0)
            with m.Switch(self.addr):
                with m.Case(Register.ID):
                    m.d.sync += self.rdata.eq(Const(ID_VALUE, DATA_BITS))
                with m.Case(Register.STATUS):
                    m.d.sync += self.rdata.eq(
                        self.busy
                        | (self.mask_open << 1)
                        | (rejected << 2)
                        | (self.result_waiting << 3)
                        | (completed << 16))
                with m.Case(Register.ES_RULE):
                    m.d.sync += self.rdata.eq(rule)
                with m.Case(Register.BUDGET):
                    m.d.sync += self.rdata.eq(budget)
                with m.Case(Register.MIN_STEPS):
                    m.d.sync += self.rdata.eq(min_steps)
                with m.Case(Register.MARGIN):
                    m.d.sync += self.rdata.eq(margin)
                with m.Case(Register.CONF_LIMIT):
                    m.d.sync += self.rdata.eq(conf_limit)
                for k, theta in enumerate(thresholds):
                    with m.Case(Register.THRESHOLD_0 + k):
                        m.d.sync += self.rdata.eq(theta)
        return m
