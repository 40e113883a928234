"""The accelerator core: controller, shared datapath and host interfaces.

The core implements docs/architecture.md cycle for cycle. One datapath of ``lanes`` neuron units
serves all layers; a command issued by the controller in cycle ``c`` passes these stages:

- ``S0`` (cycle ``c``): the controller issues ``(op, layer, row, group)``, and the crossbar
  starts reading weights and mask;
- ``A`` (``c + H``, ``H = HASH_STAGES`` for the hash source, else 0): accumulator and membrane
  read addresses;
- ``B`` (``c + H + 1``): accumulator and membrane words arrive. The integrating readout adds
  the synaptic sums, and the LIF unit starts.
- ``C`` (``c + H + 2``): the masked weights arrive from the crossbar's output register, and the
  integrate sum is written back. The LIF unit finishes: membranes are written back, and spikes
  go to the queue and to the spike-count readout.

So the last update of a layer writes its spikes ``H + 2`` cycles after it is issued, which is
the ``DRAIN`` phase of the schedule.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from sw_model.model import Model
from sw_model.schedule import drain_cycles, hash_stages

from .crossbar import Crossbar
from .early_stop import EarlyStop, Rule
from .encoder import InputEncoder
from .events import SpikeQueue
from .layout import (
    group_base,
    index_bits,
    queue_width,
    spiking_groups,
    synapse_bits,
    total_groups,
)
from .lif import LifUpdate, OutputAccumulator
from .regs import RegisterFile
from .synthesis import RDWR_DONT_CARE_PREFIX

__all__ = ["Accelerator", "CYCLES_BITS"]

CYCLES_BITS = 32  # width of out_cycles
# Cycles from issuing a command to its write-back, after the hash delay: stages B and C.
PIPELINE_DRAIN = 2


class Phase(enum.Enum, shape=3):
    """Controller phases; ``START`` is the ``IDLE`` cycle that takes the last input beat."""

    CLEAR = 0
    IDLE = 1
    ENCODE = 2
    INTEGRATE = 3
    UPDATE = 4
    DRAIN = 5
    DECIDE = 6
    RESULT = 7


class Op(enum.Enum, shape=2):
    """Datapath command carried through the pipeline stages."""

    NONE = 0
    INTEGRATE = 1  # add the masked weights of one (input, group) pair to the accumulators
    UPDATE = 2     # LIF or output update of one group, then clear its accumulators
    CLEAR = 3      # clear one accumulator word (after reset and abort)


class Accelerator(wiring.Component):
    """Event-driven spiking network accelerator for one exported model.

    Follows docs/architecture.md: rate-encoded inputs, event-driven integration of spiking
    inputs, LIF updates of ``lanes`` neurons per cycle, output accumulation, early stop, and the
    register map. Register values after reset and the mask memory come from ``model``.

    Timing: with the last input beat transferred in cycle 0, ``out_valid`` rises in cycle ``C``
    of the schedule and ``out_cycles`` equals ``C``. After reset and after an abort the core
    clears the accumulators for ``sum_k G_k`` cycles before ``in_ready`` can rise. The result
    stays on the result stream until accepted, and ``in_ready`` stays low until then. After the
    handshake ``out_class``, ``out_steps`` and ``out_cycles`` keep their values, even through an
    abort, until the last beat of the next sample is transferred, which ``boards.bridge.Bridge``
    relies on when it sends them.

    Parameters
    ----------
    model : Model
        Exported network with ``arch.encoding == "rate"``.
    trace : bool
        Add the debug trace port.
    expose_scores : bool
        Add ``out_scores``.

    Members
    -------
    in_valid, in_ready : In(1), Out(1)
        Sample stream handshake; a sample is ``sizes[0]`` beats, input 0 first.
    in_data : In(input_bits)
        Input intensity.
    out_valid, out_ready : Out(1), In(1)
        Result stream handshake.
    out_class : Out(bit_length(n_out - 1))
        Class of the inference.
    out_steps : Out(bit_length(timesteps))
        Timesteps run.
    out_cycles : Out(32)
        Cycle count ``C``.
    out_scores : Out(ArrayLayout(signed(output_bits), n_out))
        Output accumulators at the stop, class 0 in the low bits (only with ``expose_scores``).
    reg_addr, reg_wdata, reg_we, reg_re, reg_rdata : In(8), In(32), In(1), In(1), Out(32)
        Register bus, see :class:`hdl.regs.RegisterFile`.
    trace_valid, trace_step, trace_layer, trace_group, trace_spikes, trace_values : Out
        One record per update-phase group, in the cycle after the group is computed (only with
        ``trace``). ``trace_values`` carries ``lanes`` signed values of ``max(V, output_bits)``
        bits: membranes after reset, or ``o_j`` for an integrating output layer.
    """

    def __init__(self, model: Model, *, trace: bool = False, expose_scores: bool = False):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a sw_model.model.Model, not {model!r}")
        arch = model.arch
        if arch.encoding != "rate":
            raise ValueError(f"the accelerator supports only rate encoding, not "
                             f"{arch.encoding!r}; binary configurations stop after the golden "
                             f"model")
        self._model = model
        self._trace = bool(trace)
        self._expose_scores = bool(expose_scores)

        members = {
            "in_valid": In(1),
            "in_ready": Out(1),
            "in_data": In(arch.input_bits),
            "out_valid": Out(1),
            "out_ready": In(1),
            "out_class": Out(index_bits(arch.n_out)),
            "out_steps": Out(arch.timesteps.bit_length()),
            "out_cycles": Out(CYCLES_BITS),
            "reg_addr": In(8),
            "reg_wdata": In(32),
            "reg_we": In(1),
            "reg_re": In(1),
            "reg_rdata": Out(32),
        }
        if expose_scores:
            members["out_scores"] = Out(data.ArrayLayout(signed(arch.output_bits), arch.n_out))
        if trace:
            members.update({
                "trace_valid": Out(1),
                "trace_step": Out(index_bits(arch.timesteps)),
                "trace_layer": Out(index_bits(arch.n_layers)),
                "trace_group": Out(index_bits(self._max_groups)),
                "trace_spikes": Out(arch.lanes),
                "trace_values": Out(data.ArrayLayout(
                    signed(max(arch.membrane_bits, arch.output_bits)), arch.lanes)),
            })
        super().__init__(members)

    @property
    def model(self) -> Model:
        return self._model

    @property
    def _max_groups(self) -> int:
        arch = self._model.arch
        return max(arch.groups(k) for k in range(arch.n_layers))

    def elaborate(self, platform):
        m = Module()
        model = self._model
        arch = model.arch
        layers = arch.n_layers
        last_layer = layers - 1
        lanes = arch.lanes
        hash_delay = hash_stages(arch)
        drain = drain_cycles(arch)
        if drain != hash_delay + PIPELINE_DRAIN:
            raise ValueError(f"sw_model.schedule gives DRAIN = {drain} cycles, but this datapath "
                             f"empties in {hash_delay + PIPELINE_DRAIN}; update hdl/core.py "
                             f"together with the schedule")
        acc_bits = synapse_bits(arch)
        acc_words = total_groups(arch)
        membrane_words = spiking_groups(arch)
        group_counts = [arch.groups(k) for k in range(layers)]
        acc_layout = data.ArrayLayout(signed(acc_bits), lanes)
        membrane_layout = data.ArrayLayout(signed(arch.membrane_bits), lanes)

        # -- submodules ------------------------------------------------------------------------
        m.submodules.regs = regs = RegisterFile(model)
        m.submodules.encoder = encoder = InputEncoder(arch)
        m.submodules.crossbar = crossbar = Crossbar(arch, model.masks)
        # An input takes G_k cycles, so pops come at least min(G_k) cycles apart.
        pop_gap = 2 if min(group_counts) >= 2 else 1
        m.submodules.queue = queue = SpikeQueue(width=queue_width(arch), lanes=lanes,
                                                pop_gap=pop_gap)
        m.submodules.lif = lif = LifUpdate.for_arch(arch, acc_bits)
        m.submodules.readout = readout = OutputAccumulator(arch, acc_bits)
        m.submodules.early_stop = early_stop = EarlyStop(arch)

        accumulators = memory.Memory(shape=unsigned(acc_layout.size), depth=acc_words, init=[])
        m.submodules[RDWR_DONT_CARE_PREFIX + "accumulators"] = accumulators
        acc_read = accumulators.read_port()
        acc_write = accumulators.write_port()
        if membrane_words:
            # Holds the leaked potential a = v - (v >> L) of each spiking neuron, see LifUpdate.
            membranes = memory.Memory(shape=unsigned(membrane_layout.size), depth=membrane_words,
                                      init=[])
            m.submodules[RDWR_DONT_CARE_PREFIX + "membranes"] = membranes
            membrane_read = membranes.read_port()
            membrane_write = membranes.write_port()

        m.d.comb += [
            regs.addr.eq(self.reg_addr),
            regs.wdata.eq(self.reg_wdata),
            regs.we.eq(self.reg_we),
            regs.re.eq(self.reg_re),
            self.reg_rdata.eq(regs.rdata),
            crossbar.mask_addr.eq(regs.mask_addr),
            crossbar.mask_data.eq(regs.mask_data),
            crossbar.mask_we.eq(regs.mask_we),
        ]

        # -- controller state ------------------------------------------------------------------
        phase = Signal(Phase, init=Phase.CLEAR)
        step = Signal(index_bits(arch.timesteps))          # t, 0-based
        steps_run = Signal(arch.timesteps.bit_length())    # n = t + 1
        m.d.comb += steps_run.eq(step + 1)
        layer = Signal(index_bits(layers))
        group = Signal(index_bits(self._max_groups))
        drain_count = Signal(range(drain))
        clear_count = Signal(range(acc_words))
        beats = Signal(range(arch.n_in))
        # `beats != 0`, kept in a flip-flop because `running` gates the register writes and the
        # comparison lengthened that path beyond 10 ns on ECP5.
        beats_started = Signal()
        cycles = Signal(CYCLES_BITS)

        last_group = Signal.like(group)
        layer_base = Signal(index_bits(acc_words))
        with m.Switch(layer):
            for k in range(layers):
                with m.Case(k):
                    m.d.comb += [
                        last_group.eq(group_counts[k] - 1),
                        layer_base.eq(group_base(arch, k)),
                    ]
        at_last_group = group == last_group

        # Command issued in this cycle (stage S0).
        op = Signal(Op)
        word = Signal(index_bits(acc_words))
        m.d.comb += [
            crossbar.layer.eq(layer),
            crossbar.row.eq(queue.head),
            crossbar.group.eq(group),
            word.eq(layer_base + group),
        ]

        transfer = self.in_valid & self.in_ready
        computing = Signal()
        m.d.comb += computing.eq((phase == Phase.ENCODE) | (phase == Phase.INTEGRATE)
                                 | (phase == Phase.UPDATE) | (phase == Phase.DRAIN)
                                 | (phase == Phase.DECIDE))
        with m.If(phase == Phase.IDLE):
            m.d.comb += self.in_ready.eq(~regs.mask_open)
        running = Signal()
        m.d.comb += [
            running.eq(((phase == Phase.IDLE) & (beats_started | transfer)) | computing),
            regs.running.eq(running),
            regs.busy.eq(running | (phase == Phase.CLEAR)),
            regs.result_waiting.eq(phase == Phase.RESULT),
            regs.scale_index.eq(step),
        ]

        m.d.comb += [
            early_stop.rule.eq(regs.rule),
            early_stop.margin.eq(regs.margin),
            early_stop.scale.eq(regs.scale),
            early_stop.conf_limit.eq(regs.conf_limit),
            early_stop.scores.eq(readout.scores),
        ]

        # The encoder prepares S_0 of the next timestep while this one runs (see InputEncoder).
        m.d.comb += [
            encoder.beat.eq(transfer),
            encoder.beat_last.eq(beats == arch.n_in - 1),
            encoder.beat_data.eq(self.in_data),
            encoder.prepare.eq(phase == Phase.ENCODE),
            encoder.step.eq(step),
            encoder.stop.eq(regs.abort),
            queue.load_spikes.eq(encoder.spikes),
        ]

        with m.If(computing):
            m.d.sync += cycles.eq(cycles + 1)

        # The step changes at least one layer before DRAIN and DECIDE read these, and the
        # register keeps the comparisons out of the decision path.
        at_budget = Signal()
        past_min_steps = Signal()
        m.d.sync += [
            at_budget.eq(steps_run == regs.budget),
            past_min_steps.eq(steps_run >= regs.min_steps),
        ]

        with m.Switch(phase):
            with m.Case(Phase.CLEAR):
                m.d.comb += [op.eq(Op.CLEAR), word.eq(clear_count)]
                m.d.sync += clear_count.eq(clear_count + 1)
                with m.If(clear_count == acc_words - 1):
                    m.d.sync += [clear_count.eq(0), phase.eq(Phase.IDLE)]

            with m.Case(Phase.IDLE):
                with m.If(transfer):
                    m.d.sync += [beats.eq(beats + 1), beats_started.eq(1)]
                    with m.If(beats == arch.n_in - 1):
                        # START: the controller leaves idle.
                        m.d.sync += [
                            beats.eq(0),
                            beats_started.eq(0),
                            step.eq(0),
                            cycles.eq(1),
                            phase.eq(Phase.ENCODE),
                        ]
                        m.d.comb += readout.clear.eq(1)

            with m.Case(Phase.ENCODE):
                m.d.comb += queue.load.eq(1)
                m.d.sync += [layer.eq(0), group.eq(0), phase.eq(Phase.INTEGRATE)]

            with m.Case(Phase.INTEGRATE):
                with m.If(queue.head_valid):
                    m.d.comb += op.eq(Op.INTEGRATE)
                    with m.If(at_last_group):
                        m.d.comb += queue.pop.eq(1)
                        m.d.sync += group.eq(0)
                    with m.Else():
                        m.d.sync += group.eq(group + 1)
                with m.Else():
                    # No input left: this cycle is the layer's first update.
                    m.d.comb += op.eq(Op.UPDATE)
                    with m.If(at_last_group):
                        m.d.sync += [drain_count.eq(0), phase.eq(Phase.DRAIN)]
                    with m.Else():
                        m.d.sync += [group.eq(group + 1), phase.eq(Phase.UPDATE)]

            with m.Case(Phase.UPDATE):
                m.d.comb += op.eq(Op.UPDATE)
                with m.If(at_last_group):
                    m.d.sync += [group.eq(0), drain_count.eq(0), phase.eq(Phase.DRAIN)]
                with m.Else():
                    m.d.sync += group.eq(group + 1)

            with m.Case(Phase.DRAIN):
                m.d.sync += drain_count.eq(drain_count + 1)
                with m.If(drain_count == drain - 1):
                    m.d.sync += group.eq(0)
                    with m.If(layer != last_layer):
                        m.d.sync += [layer.eq(layer + 1), phase.eq(Phase.INTEGRATE)]
                    with m.Else():
                        checked = at_budget | ((regs.rule != Rule.OFF) & past_min_steps)
                        with m.If(checked):
                            m.d.comb += early_stop.start.eq(1)
                            m.d.sync += phase.eq(Phase.DECIDE)
                        with m.Else():
                            m.d.sync += [step.eq(step + 1), phase.eq(Phase.ENCODE)]

            with m.Case(Phase.DECIDE):
                with m.If(early_stop.done):
                    stop = at_budget | (early_stop.fire & past_min_steps)
                    with m.If(stop):
                        m.d.comb += regs.completed.eq(1)
                        m.d.sync += [
                            self.out_class.eq(early_stop.top1),
                            self.out_steps.eq(steps_run),
                            phase.eq(Phase.RESULT),
                        ]
                    with m.Else():
                        m.d.sync += [step.eq(step + 1), phase.eq(Phase.ENCODE)]

            with m.Case(Phase.RESULT):
                m.d.comb += self.out_valid.eq(1)
                with m.If(self.out_ready):
                    m.d.sync += phase.eq(Phase.IDLE)

        with m.If(regs.abort):
            # Abort drops the sample, the inference or the waiting result, then clears.
            m.d.sync += [beats.eq(0), beats_started.eq(0), clear_count.eq(0),
                         phase.eq(Phase.CLEAR)]

        m.d.comb += [self.out_cycles.eq(cycles)]
        if self._expose_scores:
            m.d.comb += self.out_scores.eq(readout.scores)

        # -- pipeline stages A, B and C ----------------------------------------------------------
        # Layer and step stay constant while commands are in flight: both change only after the
        # DRAIN phase has emptied the pipeline.
        op_a, word_a, layer_a, group_a = op, word, layer, group
        for stage in range(hash_delay):
            delayed = (Signal(Op, name=f"op_h{stage}"), Signal.like(word, name=f"word_h{stage}"),
                       Signal.like(layer, name=f"layer_h{stage}"),
                       Signal.like(group, name=f"group_h{stage}"))
            m.d.sync += [delayed[0].eq(op_a), delayed[1].eq(word_a), delayed[2].eq(layer_a),
                         delayed[3].eq(group_a)]
            op_a, word_a, layer_a, group_a = delayed

        m.d.comb += acc_read.addr.eq(word_a)
        if membrane_words:
            m.d.comb += membrane_read.addr.eq(word_a)

        op_b = Signal(Op)
        word_b = Signal.like(word)
        layer_b = Signal.like(layer)
        group_b = Signal.like(group)
        m.d.sync += [op_b.eq(op_a), word_b.eq(word_a), layer_b.eq(layer_a), group_b.eq(group_a)]

        op_c = Signal(Op)
        word_c = Signal.like(word)
        layer_c = Signal.like(layer)
        group_c = Signal.like(group)
        m.d.sync += [op_c.eq(op_b), word_c.eq(word_b), layer_c.eq(layer_b), group_c.eq(group_b)]

        # Stage B reads the accumulator word, and stage C adds the masked weights (registered by
        # the crossbar) and writes it back. An update or a clear writes 0. A read in stage B
        # misses the writes of stage C in the same cycle and in the cycle before, which happen
        # for consecutive commands on one group in layers with G_k <= 2. Those are forwarded.
        acc_b = Signal(acc_layout)
        acc_c = Signal(acc_layout)
        acc_next = Signal(acc_layout)
        writes = op_c != Op.NONE
        m.d.comb += [
            acc_b.eq(acc_read.data),
            acc_write.addr.eq(word_c),
            acc_write.data.eq(acc_next),
            acc_write.en.eq(writes),
        ]
        with m.If(op_c == Op.INTEGRATE):
            for lane in range(lanes):
                m.d.comb += acc_next[lane].eq(acc_c[lane] + crossbar.weights[lane])

        if min(group_counts) <= 2:
            last_write = Signal(acc_layout)
            last_word = Signal.like(word)
            last_valid = Signal()
            m.d.sync += [last_write.eq(acc_next), last_word.eq(word_c), last_valid.eq(writes)]
            with m.If(last_valid & (last_word == word_b)):
                m.d.comb += acc_b.eq(last_write)
        if min(group_counts) == 1:
            with m.If(writes & (word_c == word_b)):
                m.d.comb += acc_b.eq(acc_next)
        m.d.sync += acc_c.eq(acc_b)

        # The LIF unit takes stage B data and returns its results in stage C (latency 1).
        threshold = Signal.like(regs.thresholds[0])
        with m.Switch(layer_b):
            for k in range(arch.spiking_layers):
                with m.Case(k):
                    m.d.comb += threshold.eq(regs.thresholds[k])
        m.d.comb += [
            lif.synapse.eq(acc_b),
            lif.threshold.eq(threshold),
            lif.first_step.eq(step == 0),
        ]
        if membrane_words:
            m.d.comb += lif.leaked.eq(membrane_read.data)

        updating = op_c == Op.UPDATE
        spiking_layer = layer_c < arch.spiking_layers
        if membrane_words:
            # The leaked potential comes one cycle after the spikes (stage D). Nothing reads a
            # membrane before the next timestep, so the later write costs no cycle.
            word_d = Signal.like(word_c)
            writes_membrane = Signal()
            m.d.sync += [word_d.eq(word_c), writes_membrane.eq(updating & spiking_layer)]
            m.d.comb += [
                membrane_write.addr.eq(word_d),
                membrane_write.data.eq(lif.leaked_next),
                membrane_write.en.eq(writes_membrane),
            ]

        # Spikes of a hidden layer are the inputs of the next one. Lanes past the end of a layer
        # never spike: their weights are 0 and their membranes stay 0 below any threshold >= 1.
        m.d.comb += [
            queue.push.eq(updating & (layer_c != last_layer)),
            queue.push_group.eq(group_c),
            queue.push_spikes.eq(lif.spikes),
        ]

        # The integrating readout adds the synaptic sums in stage B, the spike count adds the
        # spikes in stage C; both are final before DRAIN ends.
        if arch.readout == "integrate":
            m.d.comb += [
                readout.update.eq((op_b == Op.UPDATE) & (layer_b == last_layer)),
                readout.group.eq(group_b),
                readout.synapse.eq(acc_b),
            ]
        else:
            m.d.comb += [
                readout.update.eq(updating & (layer_c == last_layer)),
                readout.group.eq(group_c),
                readout.spikes.eq(lif.spikes),
            ]

        if self._trace:
            self._elaborate_trace(m, arch, step, updating, spiking_layer, layer_c, group_c,
                                  readout)
        return m

    def _elaborate_trace(self, m, arch, step, updating, spiking_layer, layer_c, group_c, readout):
        """Register one trace record per update-phase group, one cycle after stage C."""
        lif = m.submodules.lif
        spiking_d = Signal()
        membranes_d = Signal.like(lif.membrane_next)
        m.d.sync += [
            self.trace_valid.eq(updating),
            self.trace_step.eq(step),
            self.trace_layer.eq(layer_c),
            self.trace_group.eq(group_c),
            self.trace_spikes.eq(Mux(spiking_layer, lif.spikes, 0)),
            spiking_d.eq(spiking_layer),
            membranes_d.eq(lif.membrane_next),
        ]
        # o_j of the integrating output layer are read after the update of the traced group.
        for lane in range(arch.lanes):
            with m.If(spiking_d):
                m.d.comb += self.trace_values[lane].eq(membranes_d[lane])
            with m.Else():
                for g in range(arch.groups(arch.n_layers - 1)):
                    j = g * arch.lanes + lane
                    if j < arch.n_out:
                        with m.If(self.trace_group == g):
                            m.d.comb += self.trace_values[lane].eq(readout.scores[j])
