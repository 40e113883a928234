"""Executable form of the arithmetic in docs/architecture.md.

Everything here is NumPy only and shared by the torch training model, the golden model and the
Amaranth generator, so that the three read one definition of each quantity. Section names in the
comments refer to docs/architecture.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

__all__ = [
    "ArchParams",
    "EarlyStopParams",
    "HASH_ROUNDS",
    "TABLE_SIZE",
    "EXP_FRAC",
    "EXP_LEN",
    "EXP_ONE_SHIFT",
    "SCALE_SHIFT",
    "mix32",
    "seed_key",
    "synapse_hash",
    "weight_tables",
    "layer_weights",
    "rate_threshold",
    "input_spikes",
    "leak",
    "saturate",
    "exp_table",
    "scale_table",
    "confidence_limit",
    "bit_length",
]

# Section "Random weights": the hash and the quantile tables.
HASH_ROUNDS = 2
TABLE_SIZE = 256
MASK32 = 0xFFFFFFFF

# Section "Early stop": fixed-point constants of the confidence rule.
EXP_FRAC = 3        # k counts eighths of (mean margin / alpha)
EXP_LEN = 128       # EXP table entries; k saturates at EXP_LEN - 1, where exp(-15.9) < 2**-16
EXP_ONE_SHIFT = 16  # EXP[0] == 2**16 stands for exp(0) == 1
SCALE_SHIFT = 8     # k = (d * SCALE[n]) >> SCALE_SHIFT

WEIGHT_DISTRIBUTIONS = ("gaussian", "lognormal_pair")
RESET_MODES = ("subtract", "zero")
READOUTS = ("integrate", "spike_count")
WEIGHT_SOURCES = ("rom", "hash")
EARLY_STOP_RULES = ("off", "margin", "confidence")
ENCODINGS = ("rate", "binary")


def bit_length(value: int) -> int:
    """Return the number of bits needed to write the non-negative integer ``value``."""
    return int(value).bit_length()


@dataclass(frozen=True)
class ArchParams:
    """Every parameter that fixes the bits the accelerator computes.

    Attributes
    ----------
    sizes:
        Neuron counts from input to output, for example ``(64, 128, 10)``. Layer ``k`` (1-based in
        the spec, 0-based in code) connects ``sizes[k]`` inputs to ``sizes[k + 1]`` neurons.
    input_bits:
        Width of an unsigned input intensity. Inputs lie in ``[0, 2**input_bits - 1]``.
    timesteps:
        Maximum timestep budget ``T_max`` the hardware is built for.
    weight_bits:
        Width ``W`` of a signed weight. Weights lie in ``[-(2**(W-1) - 1), 2**(W-1) - 1]``.
    membrane_bits:
        Width ``V`` of a signed membrane potential.
    leak_shift:
        Leak as an arithmetic right shift; 0 means no leak.
    """

    sizes: tuple[int, ...] = (64, 128, 10)
    input_bits: int = 4
    timesteps: int = 16
    weight_bits: int = 4
    weight_seed: int = 1
    weight_dist: str = "gaussian"
    weight_sigma: float = 2.5           # gaussian: standard deviation in weight LSBs
    lognormal_sigma: float = 0.5        # lognormal_pair: sigma of log-conductance
    lognormal_median: float = 2.0       # lognormal_pair: median conductance in weight LSBs
    membrane_bits: int = 12
    leak_shift: int = 4
    reset: str = "subtract"
    readout: str = "integrate"
    lanes: int = 8
    weight_source: str = "rom"
    encoding: str = "rate"              # "rate" (hardware) or "binary" (event frames, software only)

    def __post_init__(self):
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))

    # -- derived quantities (section "Number formats") --
    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def weight_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def membrane_min(self) -> int:
        return -(1 << (self.membrane_bits - 1))

    @property
    def membrane_max(self) -> int:
        return (1 << (self.membrane_bits - 1)) - 1

    def groups(self, layer: int) -> int:
        """Number of lane groups ``G_k = ceil(neurons / lanes)`` of a layer (0-based)."""
        return -(-self.sizes[layer + 1] // self.lanes)

    def syn_bits(self, layer: int) -> int:
        """Width of the signed synaptic sum of a layer: ``W + bit_length(fan_in)``."""
        return self.weight_bits + bit_length(self.sizes[layer])

    @property
    def output_bits(self) -> int:
        """Width of an output accumulator ``o_j``."""
        if self.readout == "integrate":
            return self.syn_bits(self.n_layers - 1) + bit_length(self.timesteps)
        return bit_length(self.timesteps) + 1  # spike counts, kept signed for one comparator type

    @property
    def spiking_layers(self) -> int:
        """Number of layers made of LIF neurons (all but an integrating output layer)."""
        return self.n_layers if self.readout == "spike_count" else self.n_layers - 1

    def word_base(self, layer: int) -> int:
        """First word of a layer in the weight and mask memories."""
        return sum(self.sizes[k] * self.groups(k) for k in range(layer))

    @property
    def words(self) -> int:
        """Total words of the weight and mask memories."""
        return self.word_base(self.n_layers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        return d


@dataclass(frozen=True)
class EarlyStopParams:
    """Run-time early-stop settings, all held in accelerator registers (section "Early stop")."""

    rule: str = "margin"
    budget: int = 16            # timesteps run at most, 1..ArchParams.timesteps
    min_steps: int = 1          # t_min: no stop before this many steps
    margin: int = 0             # margin rule: stop when top1 - top2 >= margin
    alpha: float = 1.0          # confidence rule: softmax temperature on the mean output
    confidence: float = 0.9     # confidence rule: stop when top-1 probability >= confidence
    scale: tuple[int, ...] = field(default_factory=tuple)  # SCALE[n] for n = 1..budget (index n-1)
    conf_limit: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"] = list(self.scale)
        return d


# -- Random weights ------------------------------------------------------------------------------

def mix32(x) -> np.ndarray:
    """Apply the multiplication-free 32-bit mixer ``HASH_ROUNDS`` times (section "Random weights").

    One round is ``x += x << 10; x ^= x >> 6; x += x << 3; x ^= x >> 11; x += x << 15`` modulo
    2**32. Every step is a bijection, so the mixer is a permutation of 32-bit words.
    """
    x = np.asarray(x, dtype=np.uint32).copy()
    with np.errstate(over="ignore"):
        for _ in range(HASH_ROUNDS):
            x = x + (x << np.uint32(10))
            x = x ^ (x >> np.uint32(6))
            x = x + (x << np.uint32(3))
            x = x ^ (x >> np.uint32(11))
            x = x + (x << np.uint32(15))
    return x


def seed_key(seed: int) -> int:
    """Return the 32-bit key ``S = mix32(seed)`` that all synapse hashes of a network use."""
    return int(mix32(np.uint32(seed & MASK32)))


def synapse_key(layer: int, row, col) -> np.ndarray:
    """Pack (layer, row, col) as ``layer << 28 | row << 14 | col`` (4, 14 and 14 bits)."""
    row = np.asarray(row, dtype=np.uint32)
    col = np.asarray(col, dtype=np.uint32)
    return (np.uint32(layer) << np.uint32(28)) | (row << np.uint32(14)) | col


def synapse_hash(seed: int, layer: int, fan_in: int, fan_out: int) -> np.ndarray:
    """Return ``h[i, j] = mix32(key(layer, i, j) ^ S)`` as uint32 of shape (fan_in, fan_out)."""
    rows, cols = np.meshgrid(np.arange(fan_in), np.arange(fan_out), indexing="ij")
    return mix32(synapse_key(layer, rows, cols) ^ np.uint32(seed_key(seed)))


def weight_tables(arch: ArchParams) -> tuple[np.ndarray, np.ndarray]:
    """Return the quantile tables ``(POS, NEG)``, each int64 of shape (256,).

    A weight is ``POS[h >> 24] - NEG[(h >> 16) & 0xFF]``. For the Gaussian source NEG is zero
    and POS holds the quantized quantiles of N(0, sigma). For the differential pair both hold the
    quantized quantiles of one log-normal conductance distribution (G+ and G-), clipped to
    ``[0, weight_max]`` so that the difference fits the weight width.
    """
    wmax = arch.weight_max
    quantiles = [NormalDist().inv_cdf((u + 0.5) / TABLE_SIZE) for u in range(TABLE_SIZE)]
    if arch.weight_dist == "gaussian":
        pos = [min(max(round(arch.weight_sigma * z), -wmax), wmax) for z in quantiles]
        neg = [0] * TABLE_SIZE
    elif arch.weight_dist == "lognormal_pair":
        pos = [min(max(round(arch.lognormal_median * math.exp(arch.lognormal_sigma * z)), 0), wmax)
               for z in quantiles]
        neg = pos
    else:
        raise ValueError(f"weight distribution must be one of {WEIGHT_DISTRIBUTIONS}, "
                         f"not {arch.weight_dist!r}")
    return np.array(pos, dtype=np.int64), np.array(neg, dtype=np.int64)


def layer_weights(arch: ArchParams, layer: int) -> np.ndarray:
    """Return the fixed random weights of a layer (0-based) as int64 of shape (fan_in, fan_out)."""
    pos, neg = weight_tables(arch)
    h = synapse_hash(arch.weight_seed, layer, arch.sizes[layer], arch.sizes[layer + 1])
    return pos[(h >> np.uint32(24)).astype(np.int64)] - neg[((h >> np.uint32(16)) & 0xFF).astype(np.int64)]


# -- Input encoding ------------------------------------------------------------------------------

def rate_threshold(t: int, input_bits: int) -> int:
    """Return ``r(t)``: the ``input_bits``-bit reversal of ``t mod 2**input_bits``."""
    value = t & ((1 << input_bits) - 1)
    return int(format(value, f"0{input_bits}b")[::-1], 2)


def input_spikes(x: np.ndarray, t: int, input_bits: int) -> np.ndarray:
    """Return the boolean input spikes ``x > r(t)`` at timestep ``t`` (0-based)."""
    return x > rate_threshold(t, input_bits)


# -- LIF arithmetic ------------------------------------------------------------------------------

def leak(v: np.ndarray, shift: int) -> np.ndarray:
    """Return ``v - (v >> shift)`` with an arithmetic (flooring) shift; no leak when shift is 0."""
    if shift == 0:
        return v
    return v - (v >> shift)


def saturate(v: np.ndarray, bits: int) -> np.ndarray:
    """Clamp to the range of a signed ``bits``-bit integer."""
    return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


# -- Early stop ----------------------------------------------------------------------------------

def exp_table() -> np.ndarray:
    """Return ``EXP[k] = round(2**16 * exp(-k / 2**EXP_FRAC))`` for k in 0..EXP_LEN-1, as int64."""
    return np.array([round((1 << EXP_ONE_SHIFT) * math.exp(-k / (1 << EXP_FRAC)))
                     for k in range(EXP_LEN)], dtype=np.int64)


def scale_table(alpha: float, budget: int) -> tuple[int, ...]:
    """Return ``SCALE[n] = round(2**(SCALE_SHIFT + EXP_FRAC) / (n * alpha))`` for n = 1..budget."""
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, not {alpha!r}")
    table = tuple(round((1 << (SCALE_SHIFT + EXP_FRAC)) / (n * alpha)) for n in range(1, budget + 1))
    if max(table) >= 1 << 16:
        raise ValueError(f"alpha {alpha!r} is too small: SCALE[1] = {table[0]} does not fit 16 bits; "
                         f"use alpha >= {(1 << (SCALE_SHIFT + EXP_FRAC)) / 65535:.4f}")
    return table


def confidence_limit(p: float) -> int:
    """Return ``floor(2**16 * (1 - p) / p)``, the bound on the sum of exp terms for top-1 >= p."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), not {p!r}")
    return int(math.floor((1 << EXP_ONE_SHIFT) * (1.0 - p) / p))
