"""The one channel registry: decay modes of a leg, the analysis channels, their order in the
reference's tables and their display names.

Every stage takes channel names and orders from here (``CHANNELS`` for the schema's allowed
labels, ``ANALYSIS_CHANNELS`` for the seven analysed ones, ``REFERENCE_ORDER`` for tables that
are compared with the reference, ``CHANNEL_LABELS`` for plots and reports).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Decay modes of one tau leg as labelled in the event schema.
DECAY_MODES: Final[tuple[str, ...]] = ("pi", "rho", "e", "mu", "other")

#: The seven analysis channels plus the catch-all, in the order of the reference's yield table
#: (shared/seeds/001_*.txt): fully hadronic first, then lepton-hadron.
CHANNELS: Final[tuple[str, ...]] = (
    "pipi", "pirho", "rhorho", "epi", "mupi", "erho", "murho", "other",
)

#: The seven analysed channels (CHANNELS without the catch-all).
ANALYSIS_CHANNELS: Final[tuple[str, ...]] = CHANNELS[:-1]

#: Order of the reference's resolution table (arXiv:2504.01496, as tabulated in
#: shared/reference/ml.md): one-pion channels first.
REFERENCE_ORDER: Final[tuple[str, ...]] = (
    "pipi", "epi", "mupi", "pirho", "erho", "murho", "rhorho")

#: Display names (matplotlib mathtext) of the channels.
CHANNEL_LABELS: Final[dict[str, str]] = {
    "pipi": r"$\pi\pi$", "pirho": r"$\pi\rho$", "rhorho": r"$\rho\rho$",
    "epi": r"$e\pi$", "mupi": r"$\mu\pi$", "erho": r"$e\rho$", "murho": r"$\mu\rho$",
    "other": "other",
}

assert set(REFERENCE_ORDER) == set(ANALYSIS_CHANNELS)


def check_channels(channels: ArrayLike, source: str = "channels") -> tuple[str, ...]:
    """``channels`` as a tuple in registry order; ValueError naming ``source`` and the valid
    names for an unknown one."""
    wanted = [str(c) for c in np.atleast_1d(np.asarray(channels, dtype=object))]
    unknown = [c for c in wanted if c not in ANALYSIS_CHANNELS]
    if unknown:
        raise ValueError(f"{source}: unknown channel(s) {unknown}; valid: "
                         f"{', '.join(ANALYSIS_CHANNELS)}")
    return tuple(c for c in ANALYSIS_CHANNELS if c in set(wanted))


def channel_of(mode_p: ArrayLike, mode_m: ArrayLike) -> NDArray[np.str_]:
    """Analysis channel from the two legs' decay modes (order-independent).

    ``e``/``mu`` paired with ``pi``/``rho`` gives ``epi``, ``murho``, ...; fully leptonic or any
    ``other`` leg gives ``other``.
    """
    a = np.asarray(mode_p).astype(str)
    b = np.asarray(mode_m).astype(str)
    # Canonical order within a name: leptons first, then pi before rho.
    rank = {"e": 0, "mu": 1, "pi": 2, "rho": 3}
    out = np.full(a.shape, "other", dtype=object)
    for x, rx in rank.items():
        for y, ry in rank.items():
            if rx > ry or (rx <= 1 and ry <= 1):
                continue  # each unordered pair once; dileptonic stays "other"
            name = x + y
            out[((a == x) & (b == y)) | ((a == y) & (b == x))] = name
    return out.astype(str)


def expected_channel_fractions(br: dict[str, float]) -> dict[str, float]:
    """Channel fractions of uncorrelated-in-mode decays given per-tau mode fractions ``br``.

    The two taus decay independently in mode (spin correlations change angles, not rates), so
    P(ab) = 2 BR_a BR_b for a != b and BR_a^2 for a == b.
    """
    out: dict[str, float] = {}
    for name in CHANNELS[:-1]:
        for x in ("e", "mu", "pi", "rho"):
            if name.startswith(x) and name[len(x):] in ("pi", "rho", "e", "mu"):
                y = name[len(x):]
                out[name] = br.get(x, 0.0) * br.get(y, 0.0) * (1.0 if x == y else 2.0)
                break
    out["other"] = 1.0 - sum(out.values())
    return out
