"""Counter-based random numbers (numpy, no state): seeds, data splits and sampling noise.

Everything here is a pure function of integer keys, so a value never depends on batch or chunk
boundaries, process count or device: the split of an event depends on its ``event_id`` only,
the sampling noise of (event, candidate) on ``(seed, event_id, candidate)`` only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 (Steele, Lea & Flood 2014) on uint64 arrays, wrapping arithmetic."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _unit(h: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Uniform in (0, 1]: (h >> 11 + 1) 2^-53."""
    return ((h >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53


def uniform_hash(keys: NDArray[np.integer], salt: int) -> NDArray[np.float64]:
    """Uniform numbers in (0, 1] from integer keys: splitmix64(key ^ salt)."""
    k = np.asarray(keys).astype(np.int64).view(np.uint64)
    return _unit(splitmix64(k ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)))


def mix_seeds(*keys: int) -> int:
    """A 63-bit seed from integers (chained splitmix64), e.g. (seed, rank, step)."""
    h = np.zeros(1, np.uint64)
    for k in keys:
        h = splitmix64(h ^ np.uint64(k & 0xFFFFFFFFFFFFFFFF))
    return int(h[0] >> np.uint64(1))


def event_noise(event_id: NDArray[np.integer], seed: int, candidates: int,
                dim: int = 6) -> NDArray[np.float32]:
    """Standard-normal noise (n, candidates, dim) keyed by (seed, event_id, candidate,
    component): candidate k of an event gets the same numbers whatever the batch, the chunk or
    the number of candidates asked for. Box-Muller on counter-based uniforms."""
    n = len(event_id)
    pairs = (dim + 1) // 2
    ev = np.asarray(event_id).astype(np.int64).view(np.uint64)
    base = splitmix64(ev ^ np.uint64(mix_seeds(seed, 0xB0C5)))  # one stream per event
    ctr = np.arange(candidates * pairs * 2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        u = _unit(splitmix64(base[:, None] + (ctr[None, :] + np.uint64(1)) * _GOLDEN))
    u = u.reshape(n, candidates, pairs, 2)
    r = np.sqrt(-2.0 * np.log(u[..., 0]))  # Box-Muller: r = sqrt(-2 ln u1), angle 2 pi u2
    z = np.stack([r * np.cos(2 * np.pi * u[..., 1]), r * np.sin(2 * np.pi * u[..., 1])], -1)
    return z.reshape(n, candidates, 2 * pairs)[..., :dim].astype(np.float32)
