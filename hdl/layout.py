"""Memory layout and derived widths of the accelerator (docs/architecture.md).

Pure Python: the gateware modules build their memories and signals from these functions, and the
tests use them to pack and unpack the same words, so that layout rules live in one place.
"""

from __future__ import annotations

import numpy as np

from sw_model.spec import ArchParams, layer_weights

__all__ = [
    "index_bits",
    "word_address",
    "weight_words",
    "mask_words",
    "pack_lanes",
    "unpack_lanes",
    "group_base",
    "total_groups",
    "spiking_groups",
    "synapse_bits",
    "queue_width",
]


def index_bits(count: int) -> int:
    """Return the width of an unsigned index into ``count`` items (at least 1 bit)."""
    return max(1, (count - 1).bit_length())


def word_address(arch: ArchParams, layer: int, row: int, group: int) -> int:
    """Return the weight and mask word of synapses ``(row, group * lanes + l)`` of a layer.

    Section "Memory layout of weights and masks": word ``base_k + i * G_k + g``.
    """
    return arch.word_base(layer) + row * arch.groups(layer) + group


def pack_lanes(values, bits: int) -> int:
    """Pack per-lane integers into one word, lane ``l`` at bits ``[l*bits, (l+1)*bits)``.

    Negative values are stored in two's complement.
    """
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & ((1 << bits) - 1)) << (lane * bits)
    return word


def unpack_lanes(word: int, lanes: int, bits: int, *, signed: bool = True) -> list[int]:
    """Split a word into ``lanes`` integers of ``bits`` bits, the inverse of :func:`pack_lanes`."""
    values = []
    for lane in range(lanes):
        value = (word >> (lane * bits)) & ((1 << bits) - 1)
        if signed and value >> (bits - 1):
            value -= 1 << bits
        values.append(value)
    return values


def _layer_words(arch: ArchParams, table: np.ndarray, layer: int, bits: int) -> list[int]:
    """Pack a (fan_in, fan_out) table of a layer into words, padding missing lanes with 0."""
    groups = arch.groups(layer)
    padded = np.zeros((arch.sizes[layer], groups * arch.lanes), dtype=np.int64)
    padded[:, : arch.sizes[layer + 1]] = table
    words = []
    for row in range(arch.sizes[layer]):
        for group in range(groups):
            lanes = padded[row, group * arch.lanes:(group + 1) * arch.lanes]
            words.append(pack_lanes(lanes, bits))
    return words


def weight_words(arch: ArchParams) -> list[int]:
    """Return the contents of the weight ROM: ``arch.words`` words of ``lanes * weight_bits``."""
    words = []
    for layer in range(arch.n_layers):
        words += _layer_words(arch, layer_weights(arch, layer), layer, arch.weight_bits)
    return words


def mask_words(arch: ArchParams, masks) -> list[int]:
    """Return the mask memory contents: ``arch.words`` words of ``lanes`` bits."""
    words = []
    for layer in range(arch.n_layers):
        words += _layer_words(arch, np.asarray(masks[layer], dtype=np.int64), layer, 1)
    return words


def group_base(arch: ArchParams, layer: int) -> int:
    """Return the accumulator (and membrane) word of group 0 of a layer: ``sum_{q<k} G_q``."""
    return sum(arch.groups(q) for q in range(layer))


def total_groups(arch: ArchParams) -> int:
    """Return ``sum_k G_k``: the words of the synaptic accumulator memory."""
    return group_base(arch, arch.n_layers)


def spiking_groups(arch: ArchParams) -> int:
    """Return the words of the membrane memory, one per group of a spiking layer.

    Spiking layers come first (all hidden layers, then the output layer only for spike counts),
    so their groups are the first words of the accumulator numbering too.
    """
    return group_base(arch, arch.spiking_layers)


def synapse_bits(arch: ArchParams) -> int:
    """Return the width of one accumulator lane: the widest synaptic sum over all layers."""
    return max(arch.syn_bits(k) for k in range(arch.n_layers))


def queue_width(arch: ArchParams) -> int:
    """Return the bits of the spike queue: inputs of layer 0 or lane positions of a hidden layer."""
    widths = [arch.sizes[0]]
    widths += [arch.groups(k) * arch.lanes for k in range(arch.n_layers - 1)]
    return max(widths)
