"""8N1 UART receiver and transmitter with a fixed baud-rate divisor."""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "baud_divisor"]

# Largest relative baud-rate error accepted: a receiver samples the last (stop) bit 9.5 bit times
# after the start edge, so a 2% mismatch moves that sample by 0.19 bit times, well inside the bit.
BAUD_TOLERANCE = 0.02


def baud_divisor(clock_hz: float, baud: int) -> int:
    """Return clock cycles per bit, raising ValueError when the rate error exceeds 2%."""
    if baud <= 0:
        raise ValueError(f"baud rate must be positive, not {baud}")
    divisor = round(clock_hz / baud)
    if divisor < 4:
        raise ValueError(f"baud rate {baud} is too high for a {clock_hz / 1e6:g} MHz clock: "
                         f"a bit must last at least 4 cycles, here {clock_hz / baud:.2f}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > BAUD_TOLERANCE:
        raise ValueError(f"baud rate {baud} is {error:.1%} off with a {clock_hz / 1e6:g} MHz clock "
                         f"(divisor {divisor}); choose a rate within {BAUD_TOLERANCE:.0%}")
    return divisor


class UARTRx(wiring.Component):
    """UART receiver, 8 data bits, no parity, one stop bit, least significant bit first.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    rx : In(1)
        Serial input, idle high. It passes a two-flop synchronizer first.
    data : Out(8)
        The last received byte, valid while ``valid`` is high.
    valid : Out(1)
        High for one cycle when a byte with a good stop bit was received.
    error : Out(1)
        High for one cycle instead of ``valid`` when the stop bit was low (framing error or
        break). The receiver then waits for the line to return high before it looks for the
        next start bit.

    A byte is reported 9.5 bit times after the falling edge of its start bit, plus the two
    synchronizer cycles. A start bit that is high again at its middle is treated as a glitch.
    """

    rx: In(1, init=1)
    data: Out(8)
    valid: Out(1)
    error: Out(1)

    def __init__(self, divisor: int):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer of at least 4, not {divisor!r}")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        # The timer counts down from divisor - 1 and wraps, and the line is sampled when it
        # passes ``middle``: divisor // 2 cycles after the start edge was seen, then once per
        # bit. One reload value keeps the timer to a decrementer with a synchronous reset.
        timer = Signal(range(self.divisor), init=self.divisor - 1)
        middle = self.divisor - self.divisor // 2
        # 0: idle; 1: start bit; 2..9: data bits; 10: stop bit; 11: wait for a high line after
        # a framing error.
        bit = Signal(range(12))
        shift = Signal(8)

        with m.If((bit == 0) | (bit == 11)):
            m.d.sync += timer.eq(self.divisor - 1)
            with m.If((bit == 0) & ~rx):
                m.d.sync += bit.eq(1)
            with m.Elif((bit == 11) & rx):
                m.d.sync += bit.eq(0)
        with m.Else():
            with m.If(timer == 0):
                m.d.sync += timer.eq(self.divisor - 1)
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
            with m.If(timer == middle):
                with m.If(bit == 10):
                    with m.If(rx):
                        m.d.comb += self.valid.eq(1)
                        m.d.sync += bit.eq(0)
                    with m.Else():
                        m.d.comb += self.error.eq(1)
                        m.d.sync += bit.eq(11)
                with m.Elif((bit == 1) & rx):
                    m.d.sync += bit.eq(0)      # a glitch, not a start bit
                with m.Else():
                    # The start bit shifts in first and out again with the eighth data bit.
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), bit.eq(bit + 1)]

        m.d.comb += self.data.eq(shift)
        return m


class UARTTx(wiring.Component):
    """UART transmitter, 8 data bits, no parity, one stop bit, least significant bit first.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    tx : Out(1)
        Serial output, idle high.
    sink : In(stream.Signature(8))
        Bytes to send. ``ready`` is high while the transmitter is idle. A byte taken in cycle 0
        starts its start bit in cycle 1 and the line is idle again 10 bit times later.
    """

    tx: Out(1, init=1)
    sink: In(stream.Signature(8))

    def __init__(self, divisor: int):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer of at least 4, not {divisor!r}")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()

        timer = Signal(range(self.divisor))
        # Start bit, 8 data bits and stop bit, sent from bit 0 up.
        frame = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))

        m.d.comb += self.tx.eq(frame[0])
        m.d.comb += self.sink.ready.eq(bits_left == 0)

        with m.If(bits_left == 0):
            with m.If(self.sink.valid):
                m.d.sync += [
                    frame.eq(Cat(C(0, 1), self.sink.payload, C(1, 1))),
                    bits_left.eq(10),
                    timer.eq(self.divisor - 1),
                ]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [
                frame.eq(Cat(frame[1:], C(1, 1))),
                bits_left.eq(bits_left - 1),
                timer.eq(self.divisor - 1),
            ]
        return m
