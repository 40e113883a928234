"""Amaranth 0.5 gateware of the accelerator described in docs/architecture.md.

- :mod:`hdl.core`: :class:`~hdl.core.Accelerator`, the top-level core with its stream, register
  and trace ports;
- :mod:`hdl.crossbar` and :mod:`hdl.weights`: masked weights from a ROM or a hash pipeline;
- :mod:`hdl.encoder`: sample store and rate encoder;
- :mod:`hdl.events`: the spike queue of the event-driven schedule;
- :mod:`hdl.lif`: LIF update and output accumulators;
- :mod:`hdl.early_stop`: margin and confidence rules;
- :mod:`hdl.regs`: the register bus;
- :mod:`hdl.layout`: memory layout and widths shared with host software and tests;
- :mod:`hdl.verilog`: Verilog export; :mod:`hdl.sim`: simulator drivers;
- :mod:`hdl.synthesis`: Yosys overrides for vendor builds; :mod:`hdl.fit`: utilisation and Fmax
  of the bare core on a board.
"""
