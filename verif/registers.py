"""Register map and mask-word packing of the core, written from docs/architecture.md.

The testbench keeps its own copy of these facts instead of importing them from ``hdl/``, so that
a wrong address or packing rule in the RTL shows up as a mismatch instead of being shared.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from sw_model.spec import ArchParams, EarlyStopParams

__all__ = ["Reg", "Status", "Control", "ID_VALUE", "RULE_CODES", "mask_words", "masks_from_words",
           "early_stop_writes"]

ID_VALUE = 0x534E4E31  # "SNN1"

RULE_CODES = {"off": 0, "margin": 1, "confidence": 2}


class Reg(IntEnum):
    """Word addresses of the register bus (section "Host interfaces of the accelerator core")."""

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


class Status(IntEnum):
    """Bits of the STATUS register; the inference count sits in bits 31..16."""

    BUSY = 1 << 0
    MASK_OPEN = 1 << 1
    WRITE_REJECTED = 1 << 2
    RESULT_WAITING = 1 << 3


COMPLETED_SHIFT = 16


class Control(IntEnum):
    """Bits of the CONTROL register."""

    ABORT = 1 << 0
    CLEAR_FLAGS = 1 << 1


def mask_words(arch: ArchParams, masks) -> list[int]:
    """Pack per-layer 0/1 masks into the mask memory words, word 0 first.

    Word ``base_k + i * G_k + g`` contains synapses ``(i, g * lanes + l)`` of layer ``k`` in bit
    ``l``; lanes past the last neuron of a layer are 0.
    """
    words = []
    for k, mask in enumerate(masks):
        mask = np.asarray(mask, dtype=np.int64)
        fan_out = arch.sizes[k + 1]
        for i in range(arch.sizes[k]):
            for g in range(arch.groups(k)):
                word = 0
                for lane in range(arch.lanes):
                    j = g * arch.lanes + lane
                    if j < fan_out and mask[i, j]:
                        word |= 1 << lane
                words.append(word)
    return words


def masks_from_words(arch: ArchParams, words) -> list[np.ndarray]:
    """Unpack mask memory words into per-layer uint8 masks, the inverse of :func:`mask_words`.

    Bits in lanes past the last neuron of a layer are dropped, as the core ignores them.
    """
    masks = []
    address = 0
    for k in range(arch.n_layers):
        mask = np.zeros((arch.sizes[k], arch.sizes[k + 1]), dtype=np.uint8)
        for i in range(arch.sizes[k]):
            for g in range(arch.groups(k)):
                word = int(words[address])
                address += 1
                for lane in range(arch.lanes):
                    j = g * arch.lanes + lane
                    if j < arch.sizes[k + 1]:
                        mask[i, j] = (word >> lane) & 1
        masks.append(mask)
    return masks


def early_stop_writes(arch: ArchParams, es: EarlyStopParams) -> list[tuple[int, int]]:
    """Return the ``(address, value)`` register writes that program ``es``.

    MIN_STEPS is set to 1 before BUDGET changes, so that no intermediate state has ``t_min``
    above the budget, which the core may reject as out of range. SCALE entries are written only
    for the confidence rule, the only rule that reads them.
    """
    writes = [(Reg.MIN_STEPS, 1), (Reg.BUDGET, es.budget), (Reg.MIN_STEPS, es.min_steps),
              (Reg.ES_RULE, RULE_CODES[es.rule]), (Reg.MARGIN, es.margin)]
    if es.rule == "confidence":
        writes.append((Reg.CONF_LIMIT, es.conf_limit))
        writes.append((Reg.SCALE_ADDR, 0))
        writes += [(Reg.SCALE_DATA, int(s)) for s in es.scale]
    return [(int(address), int(value)) for address, value in writes]
