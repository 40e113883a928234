"""Verilog export of the accelerator core, for the pipeline (gen/) and the cocotb bench (verif/)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from amaranth.back import verilog

from sw_model.model import Model

from .core import Accelerator

__all__ = ["generate_verilog"]

logger = logging.getLogger(__name__)


def generate_verilog(model: Model, path: str | os.PathLike, *, trace: bool = False,
                     expose_scores: bool = False, name: str = "snn_accelerator") -> Path:
    """Write the accelerator for ``model`` as one Verilog module and return the file path.

    The module is named ``name`` and has the ports of :class:`hdl.core.Accelerator` plus
    ``clk`` and ``rst`` (synchronous, active high). Array-shaped ports such as ``out_scores``
    and ``trace_values`` are flat vectors with element 0 in the low bits. Source locations are
    left out, so the file does not depend on where the repository lives. The file is written
    atomically.
    """
    path = Path(path)
    started = time.monotonic()
    core = Accelerator(model, trace=trace, expose_scores=expose_scores)
    text = verilog.convert(core, name=name, emit_src=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    os.replace(scratch, path)
    logger.info("wrote %s (%d lines) in %.1f s", path, text.count("\n"), time.monotonic() - started)
    return path
