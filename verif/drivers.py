"""cocotb drivers for the core's sample stream, register bus and result-stream ``out_ready``.

Every driver writes its signals only right after a rising clock edge, so a value written in
cycle ``c`` is sampled by the core at the edge that ends cycle ``c``. Cycle numbers come from
:func:`cycle_now`: the number of clock periods since time 0, read after the edge.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import cocotb
from cocotb.queue import Queue
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, Lock, ReadOnly, RisingEdge

__all__ = ["CLOCK_PERIOD_NS", "cycle_now", "SampleDriver", "RegisterDriver", "ReadyDriver"]

CLOCK_PERIOD_NS = 10


def cycle_now() -> int:
    """Return the number of the current clock cycle (the clock rises at every multiple of the
    period, starting at time 0)."""
    return int(get_sim_time(unit="ns")) // CLOCK_PERIOD_NS


class SampleDriver:
    """Sends samples on ``in_valid``/``in_ready``/``in_data``, one beat per input, input 0 first.

    Samples queue up and follow each other without idle cycles unless ``gap_probability`` is
    above 0, which inserts 1 to 3 idle cycles before a beat with that probability (seeded).
    ``on_sent(index, cycle)`` is called with the cycle in which a sample's last beat was
    transferred; samples queued with ``index=None`` (partial samples) are not reported.
    """

    def __init__(self, dut, *, on_sent: Callable[[int, int], None],
                 gap_probability: float = 0.0, rng: np.random.Generator | None = None):
        self.dut = dut
        self.on_sent = on_sent
        self.gap_probability = gap_probability
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._queue: Queue = Queue()
        self._idle = Event()
        self._idle.set()
        self._flushing = False
        self.beats = 0
        self._task = None

    def start(self) -> None:
        self.dut.in_valid.value = 0
        self.dut.in_data.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, sample, index: int | None) -> None:
        """Queue one sample (a sequence of intensities); it is driven as soon as possible."""
        self._idle.clear()
        self._queue.put_nowait((index, [int(v) for v in sample]))

    def flush(self) -> None:
        """Drop the queued samples and stop driving the current one (after an abort or reset)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._flushing = True

    async def wait_idle(self) -> None:
        """Wait until every queued sample has been transferred (or flushed)."""
        await self._idle.wait()

    async def _run(self) -> None:
        clk = self.dut.clk
        await RisingEdge(clk)
        while True:
            if self._queue.empty():
                self.dut.in_valid.value = 0
                self._idle.set()
                index, sample = await self._queue.get()
                await RisingEdge(clk)
            else:
                index, sample = self._queue.get_nowait()
            self._flushing = False
            last = await self._drive(sample)
            if last is not None and index is not None:
                self.on_sent(index, last)

    async def _drive(self, sample: list[int]) -> int | None:
        dut = self.dut
        edge = RisingEdge(dut.clk)
        settled = ReadOnly()
        in_valid, in_data, in_ready = dut.in_valid, dut.in_data, dut.in_ready
        last = None
        for value in sample:
            if self.gap_probability and self.rng.random() < self.gap_probability:
                in_valid.value = 0
                for _ in range(int(self.rng.integers(1, 4))):
                    await edge
            in_valid.value = 1
            in_data.value = value
            while True:
                await settled
                accepted = str(in_ready.value) == "1"
                cycle = cycle_now()
                await edge
                if self._flushing:
                    in_valid.value = 0
                    return None
                if accepted:
                    break
            self.beats += 1
            last = cycle
        return last


class RegisterDriver:
    """Reads and writes the register bus (``reg_addr``, ``reg_wdata``, ``reg_we``, ``reg_re``,
    ``reg_rdata``); ``reg_rdata`` is read in the cycle after ``reg_re``.

    Accesses are serialised by a lock, so concurrent coroutines may share the driver. Each
    access starts at the next rising edge.
    """

    def __init__(self, dut):
        self.dut = dut
        self._lock = Lock()
        self.writes = 0

    def start(self) -> None:
        self.dut.reg_we.value = 0
        self.dut.reg_re.value = 0
        self.dut.reg_addr.value = 0
        self.dut.reg_wdata.value = 0

    async def write(self, address: int, value: int) -> int:
        """Write one register and return the cycle in which ``reg_we`` was high."""
        async with self._lock:
            clk = self.dut.clk
            await RisingEdge(clk)
            self.dut.reg_addr.value = address
            self.dut.reg_wdata.value = value & 0xFFFFFFFF
            self.dut.reg_we.value = 1
            cycle = cycle_now()
            await RisingEdge(clk)
            self.dut.reg_we.value = 0
            self.writes += 1
            return cycle

    async def write_many(self, writes) -> None:
        """Write ``(address, value)`` pairs in order."""
        for address, value in writes:
            await self.write(address, value)

    async def read(self, address: int) -> int:
        """Read one register."""
        async with self._lock:
            clk = self.dut.clk
            await RisingEdge(clk)
            self.dut.reg_addr.value = address
            self.dut.reg_re.value = 1
            await RisingEdge(clk)
            self.dut.reg_re.value = 0
            await ReadOnly()
            value = self.dut.reg_rdata.value
            if not value.is_resolvable:
                raise AssertionError(f"reg_rdata of register 0x{address:02x} is {value} "
                                     f"(not 0 or 1 in every bit) in the cycle after reg_re")
            return int(value)


class ReadyDriver:
    """Drives ``out_ready``: always high, or high in each cycle with a probability (seeded)."""

    def __init__(self, dut, *, probability: float = 1.0, rng: np.random.Generator | None = None):
        self.dut = dut
        self.probability = probability
        self.rng = rng if rng is not None else np.random.default_rng(1)
        self._changed = Event()
        self._task = None

    def start(self) -> None:
        self.dut.out_ready.value = 1 if self.probability >= 1.0 else 0
        self._task = cocotb.start_soon(self._run())

    def set_probability(self, probability: float) -> None:
        """Change the probability from the next rising edge on."""
        self.probability = probability
        self._changed.set()

    async def _run(self) -> None:
        clk = self.dut.clk
        while True:
            await RisingEdge(clk)
            if self.probability >= 1.0:
                # Always ready: nothing to do per cycle until the probability changes.
                self.dut.out_ready.value = 1
                self._changed.clear()
                await self._changed.wait()
                await RisingEdge(clk)
            self.dut.out_ready.value = int(self.rng.random() < self.probability)
