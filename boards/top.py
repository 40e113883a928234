"""Board top level: the accelerator core behind a UART bridge, with clocking and LEDs."""

from __future__ import annotations

from amaranth import *
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from sw_model.model import Model

from . import protocol
from .bridge import Bridge
from .catalog import BoardInfo
from .uart import UARTRx, UARTTx, baud_divisor

__all__ = ["SerialBridge", "AcceleratorLink", "BoardTop", "link_info", "DEFAULT_TIMEOUT_S"]

# Inter-byte timeout of the host link. USB-to-UART bridges forward a request in USB packets,
# and the gap between packets is estimated at a few milliseconds (USB frames are 1 ms apart).
# So 20 ms should not split a frame that a host wrote in one call, and a host that waits 50 ms
# after a lost byte gets the error response first.
DEFAULT_TIMEOUT_S = 0.020


def link_info(model: Model, clock_hz: float, baud: int) -> protocol.Info:
    """Return the INFO constants of a board built for ``model`` (``core_id`` left 0)."""
    arch = model.arch
    return protocol.Info(
        protocol_version=protocol.PROTOCOL_VERSION, core_id=0, n_in=arch.n_in, n_out=arch.n_out,
        input_bits=arch.input_bits, timesteps=arch.timesteps, lanes=arch.lanes,
        mask_words=arch.words, max_payload=protocol.max_payload(arch.n_in, arch.lanes),
        clock_hz=int(round(clock_hz)), baud=int(baud),
        arch_fingerprint=protocol.arch_fingerprint(arch.to_dict()),
    )


class SerialBridge(wiring.Component):
    """UART receiver and transmitter around a ``Bridge``: the host link without the core.

    Members
    -------
    uart_rx : In(1), idle high; uart_tx : Out(1), idle high.
    core : Out(bridge signature minus the byte ports), the core-facing ports of the Bridge.
    busy, error, last_class : the status outputs of the Bridge.
    """

    def __init__(self, bridge: Bridge, divisor: int):
        self.bridge = bridge
        self.divisor = divisor
        members = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1)}
        for name, member in bridge.signature.members.items():
            if name not in ("rx_data", "rx_valid", "rx_error", "tx"):
                members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.uart_rx = rx = UARTRx(self.divisor)
        m.submodules.uart_tx = tx = UARTTx(self.divisor)
        m.d.comb += [
            rx.rx.eq(self.uart_rx),
            self.uart_tx.eq(tx.tx),
            bridge.rx_data.eq(rx.data),
            bridge.rx_valid.eq(rx.valid),
            bridge.rx_error.eq(rx.error),
        ]
        wiring.connect(m, bridge.tx, tx.sink)
        for name, member in self.signature.members.items():
            if name in ("uart_rx", "uart_tx"):
                continue
            ours, theirs = getattr(self, name), getattr(bridge, name)
            if member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        return m


class AcceleratorLink(wiring.Component):
    """The accelerator core with its UART host link: the whole design inside the FPGA pins.

    Parameters
    ----------
    model : the exported network; the core is ``hdl.core.Accelerator(model)``.
    clock_hz : frequency of the ``sync`` domain; sets the baud divisor and INFO's clock field.
    baud : UART bit rate; must lie within 2% of ``clock_hz`` divided by an integer of at least 4.
    timeout_s : inter-byte timeout of the bridge, in seconds.
    timeout_cycles : overrides ``timeout_s`` in clock cycles (simulation uses short timeouts).
    cycle_limit : overrides the bridge's core watchdog, in clock cycles.

    Members
    -------
    uart_rx : In(1); uart_tx : Out(1); busy : Out(1); error : Out(1); last_class : Out(n).
    """

    def __init__(self, model: Model, *, clock_hz: float, baud: int,
                 timeout_s: float = DEFAULT_TIMEOUT_S, timeout_cycles: int | None = None,
                 cycle_limit: int | None = None):
        self.model = model
        self.clock_hz = clock_hz
        self.baud = baud
        self.divisor = baud_divisor(clock_hz, baud)
        if timeout_cycles is None:
            timeout_cycles = max(int(timeout_s * clock_hz), 20 * self.divisor)
        self.info = link_info(model, clock_hz, baud)
        self.bridge = Bridge(model.arch, self.info, timeout_cycles=timeout_cycles,
                             cycle_limit=cycle_limit)
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
            "last_class": Out(self.bridge.class_bits),
        })

    def elaborate(self, platform):
        from hdl.core import Accelerator

        m = Module()
        m.submodules.link = link = SerialBridge(self.bridge, self.divisor)
        m.submodules.core = core = Accelerator(self.model)
        m.d.comb += [
            link.uart_rx.eq(self.uart_rx),
            self.uart_tx.eq(link.uart_tx),
            self.busy.eq(link.busy),
            self.error.eq(link.error),
            self.last_class.eq(link.last_class),
            # sample stream
            core.in_valid.eq(link.in_valid),
            core.in_data.eq(link.in_data),
            link.in_ready.eq(core.in_ready),
            # result stream
            link.out_valid.eq(core.out_valid),
            core.out_ready.eq(link.out_ready),
            link.out_class.eq(core.out_class),
            link.out_steps.eq(core.out_steps),
            link.out_cycles.eq(core.out_cycles),
            # register bus
            core.reg_addr.eq(link.reg_addr),
            core.reg_wdata.eq(link.reg_wdata),
            core.reg_we.eq(link.reg_we),
            core.reg_re.eq(link.reg_re),
            link.reg_rdata.eq(core.reg_rdata),
        ]
        return m


def request_ports(platform, name: str, number: int):
    """Request a resource as raw ports (``dir="-"``, subsignals included) for io.Buffer."""
    from amaranth.build import Subsignal

    resource = platform.lookup(name, number)
    if any(isinstance(io, Subsignal) for io in resource.ios):
        return platform.request(name, number, dir={io.name: "-" for io in resource.ios})
    return platform.request(name, number, dir="-")


class BoardTop(Elaboratable):
    """The design for one board: clock and reset, ``AcceleratorLink`` on the UART pins, LEDs.

    The busy LED is lit while the bridge handles a frame, and the error LED from an error
    response to the next OK response. The class LEDs show the last class in binary, least
    significant bit on the first LED; bits beyond the board's LEDs are not shown.
    """

    def __init__(self, model: Model, board: BoardInfo, *, pll, clock_hz: float, baud: int):
        self.model = model
        self.board = board
        self.pll = pll
        self.clock_hz = clock_hz
        self.link = AcceleratorLink(model, clock_hz=clock_hz, baud=baud)

    def elaborate(self, platform):
        from .clocking import ClockReset

        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True)
        clock_pin = platform.request(self.board.clock_resource, 0, dir="-")
        m.submodules.clock_reset = ClockReset(clock_pin, self.pll, family=self.board.family)
        m.submodules.link = link = self.link

        uart = request_ports(platform, "uart", 0)
        m.submodules.uart_rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [link.uart_rx.eq(rx_buffer.i), tx_buffer.o.eq(link.uart_tx)]

        requested = {}

        def drive_led(spec, value):
            # A resource can be requested once; the RGB LEDs share one resource per LED.
            name, number, subsignal = spec
            if (name, number) not in requested:
                requested[name, number] = request_ports(platform, name, number)
            resource = requested[name, number]
            port = getattr(resource, subsignal) if subsignal else resource
            buffer = io.Buffer("o", port)
            m.submodules[f"led_{name}_{number}_{subsignal or ''}"] = buffer
            m.d.comb += buffer.o.eq(value)

        drive_led(self.board.busy_led, link.busy)
        drive_led(self.board.error_led, link.error)
        for bit, spec in enumerate(self.board.class_leds[:len(link.last_class)]):
            drive_led(spec, link.last_class[bit])
        return m

