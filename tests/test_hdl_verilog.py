"""Verilog export of the core: module name, ports and widths."""

import re

from hdl.sim import random_model
from hdl.verilog import generate_verilog
from sw_model.spec import ArchParams


def port_widths(text: str, module: str) -> dict[str, int]:
    """Return {port: width} of ``module`` from Verilog-2001 port declarations."""
    body = text[text.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    widths = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?"
                                           r"(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        widths[name] = int(msb) + 1 if msb else 1
    return widths


def test_verilog_ports(tmp_path):
    arch = ArchParams(sizes=(6, 5, 3), lanes=2, timesteps=4, input_bits=3)
    model = random_model(arch, seed=1, thresholds=[3])
    path = generate_verilog(model, tmp_path / "out" / "core.v", trace=True, expose_scores=True,
                            name="snn_test")
    text = path.read_text()
    widths = port_widths(text, "snn_test")
    assert widths == {
        "clk": 1, "rst": 1,
        "in_valid": 1, "in_ready": 1, "in_data": 3,
        "out_valid": 1, "out_ready": 1, "out_class": 2, "out_steps": 3, "out_cycles": 32,
        "out_scores": 3 * arch.output_bits,
        "reg_addr": 8, "reg_wdata": 32, "reg_we": 1, "reg_re": 1, "reg_rdata": 32,
        "trace_valid": 1, "trace_step": 2, "trace_layer": 1, "trace_group": 2,
        "trace_spikes": 2, "trace_values": 2 * max(arch.membrane_bits, arch.output_bits),
    }
    assert str(tmp_path) not in text  # no source paths in the output


def test_verilog_board_build_leaves_out_debug_ports(tmp_path):
    arch = ArchParams(sizes=(4, 3, 2), lanes=1, timesteps=2, input_bits=2)
    model = random_model(arch, seed=2, thresholds=[2])
    text = generate_verilog(model, tmp_path / "core.v").read_text()
    widths = port_widths(text, "snn_accelerator")
    assert "trace_valid" not in widths
    assert "out_scores" not in widths
    assert widths["out_cycles"] == 32
