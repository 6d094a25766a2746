"""ML inference: sample neutrino candidates with a trained model (:func:`predict`).

The reconstruction method ``ml`` (:mod:`ditau.reconstruct.ml`) wraps :func:`predict` into the
method-output table; this module imports no reconstruction module. :func:`predict` takes the
:class:`~ditau.inputs.Inputs` of a chunk and the chunk's table (the point cloud also needs
the jets, :data:`EXTRA_COLUMNS`).

Per event: the body runs once, its output is repeated for the K candidates, and the head is
iterated ``steps`` times (:mod:`ditau.ml.generative`). The noise of candidate k of an event
is keyed by (seed, event_id, k) (:func:`ditau.ml.hashing.event_noise`), so results do not
depend on batch or chunk boundaries (same seed, same output up to float rounding of
different batch shapes).

Target frames (``ModelConfig.target_frame``, from the model file): ``lab`` samples are the
standardised nu momenta (scaled back, and rotated back for the canonical frame); ``visible``
samples are the standardised visible-frame coordinates, inverted per leg with the event's
visible objects (:func:`ditau.ml.parametrisation.decode_visible`), so every candidate is on the
tau mass shell, m(vis + nu) = m_tau, except the legs without a real solution, whose polar
angle is clamped (flagged in :attr:`Prediction.on_shell`).

Objectives: a ``regression`` model gives one deterministic prediction per event; every
candidate is that prediction (the head runs once per event), so the candidate spread is 0 and
is *not* an uncertainty.

Tau four-momenta: p_tau = p_vis + p_nu, E_tau = sqrt(|p_tau|^2 + m_tau^2) (on-shell taus;
the visible mass and the neutrino-system mass of leptonic legs are not used).

Point estimates (``point``):

- ``median`` (default): the component-wise median of the K candidates' neutrino momenta,
  robust to outlying candidates and smooth in K;
- ``constraint``: the candidate that best satisfies the physics constraints, minimising
  chi^2 = sum_legs r_leg^2 + d^T C^-1 d, with d = MET - (p_nu+ + p_nu-)_T (C: the MET
  covariance) and r_leg = (m(vis + nu) - m_tau)/:data:`MASS_TOLERANCE` for hadronic legs (one
  massless neutrino), max(m(vis + nu) - m_tau, 0)/:data:`MASS_TOLERANCE` for leptonic legs
  (two neutrinos of unknown mass: only m <= m_tau is required), with a massless neutrino
  system.

Uncertainty: :class:`Prediction` (:func:`predict`) carries the candidate spread per event
(standard deviation of each neutrino component and of m_tautau over the K candidates);
:func:`candidate_spread` computes the same from a method-output table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray

from ditau.inputs import Inputs, inputs_from_table
from ditau.ml.device import resolve_device
from ditau.ml.features import (
    IP_COLUMNS,
    JET_COLUMNS,
    EventArrays,
    canonical_angles,
    encode,
    extract,
    has_impact_parameters,
    rotate_events,
)
from ditau.ml.generative import get_objective
from ditau.ml.hashing import event_noise
from ditau.ml.io import TrainedModel, load_model, read_model_config
from ditau.ml.model import repeat_context
from ditau.ml.parametrisation import decode_visible, n_targets
from ditau.ml.shipped import default_model, model_path
from ditau.physics import M_TAU, mass, tau_four_momenta

#: Columns the method needs besides the baselines' INPUT_COLUMNS (read by the driver); a
#: model with impact parameters needs :data:`~ditau.ml.features.IP_COLUMNS` too
#: (:func:`model_columns`).
EXTRA_COLUMNS: Final[tuple[str, ...]] = JET_COLUMNS
POINT_ESTIMATES: Final[tuple[str, ...]] = ("median", "constraint")
#: Tau-mass tolerance (GeV) of the ``constraint`` point estimate.
MASS_TOLERANCE: Final[float] = 0.25
_HADRONIC: Final[tuple[str, ...]] = ("pi", "rho")

_CACHE: dict[tuple[str, int, int, str], TrainedModel] = {}


def resolve_model(model: str | os.PathLike[str] | TrainedModel | None = None,
                  device: str | torch.device = "auto") -> TrainedModel:
    """A loaded model on ``device`` (files are cached by path, mtime, size and device).
    ``None``: the shipped default model (:data:`ditau.ml.shipped.DEFAULT_MODEL`); a shipped
    model's name (``ditau-cpu-v1``) is its file (:func:`ditau.ml.shipped.model_path`)."""
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    if isinstance(model, TrainedModel):
        if model.device != dev:
            model.model.to(dev)
        return model
    p = model_path(model).resolve()
    st = p.stat() if p.exists() else None
    key = (str(p), st.st_mtime_ns if st else 0, st.st_size if st else 0, str(dev))
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = load_model(p, device=dev)
    return _CACHE[key]


def model_columns(model: str | os.PathLike[str] | TrainedModel | None = None) -> tuple[str, ...]:
    """The columns ``model`` reads besides the baselines' INPUT_COLUMNS: :data:`EXTRA_COLUMNS`,
    and :data:`~ditau.ml.features.IP_COLUMNS` for a model with ``impact_parameters``.

    ``model``: a model file, whose configuration alone is read
    (:func:`~ditau.ml.io.read_model_config`: the network is not built nor its weights
    loaded); ``None``: the shipped default model's file (as :func:`resolve_model`); a loaded
    :class:`~ditau.ml.io.TrainedModel`: its ``config``. Raises
    :class:`~ditau.ml.io.ModelFileError` for a missing, corrupt or inconsistent model file.
    """
    if isinstance(model, TrainedModel):
        cfg = model.config
    else:
        cfg = read_model_config(model_path(model))
    return (*EXTRA_COLUMNS, *(IP_COLUMNS if cfg.impact_parameters else ()))


@torch.no_grad()
def sample_neutrinos(tm: TrainedModel, ev: EventArrays, *, candidates: int = 10,
                     steps: int | None = None, sampler: str | None = None, seed: int = 0,
                     batch_size: int = 4096) -> NDArray[np.float64]:
    """Neutrino candidates (n, K, 6) in the lab frame (GeV; :data:`~ditau.ml.features.TARGETS`
    order) for the events ``ev`` (all assumed usable); :func:`sample_candidates` without the
    on-shell flags. A model with ``impact_parameters`` needs ``ev`` read with them
    (:func:`~ditau.ml.features.extract` with ``impact_parameters=True``)."""
    return sample_candidates(tm, ev, candidates=candidates, steps=steps, sampler=sampler,
                             seed=seed, batch_size=batch_size)[0]


@torch.no_grad()
def sample_candidates(tm: TrainedModel, ev: EventArrays, *, candidates: int = 10,
                      steps: int | None = None, sampler: str | None = None, seed: int = 0,
                      batch_size: int = 4096
                      ) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None]:
    """Neutrino candidates (n, K, 6) in the lab frame (GeV; :data:`~ditau.ml.features.TARGETS`
    order) for the events ``ev`` (all assumed usable), and for the ``visible`` target frame
    ``on_shell`` (n, K, 2): the leg's candidate solves m(vis + nu) = m_tau (None for ``lab``).
    A ``regression`` model runs the head once per event and repeats the prediction."""
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg = tm.config
    objective = get_objective(cfg.objective)
    steps = steps if steps is not None else cfg.sample_steps
    sampler = sampler if sampler is not None else cfg.sampler
    dev = tm.device
    n = len(ev)
    dim = n_targets(cfg.target_frame)
    k_run = 1 if objective.deterministic else candidates  # regression: one prediction
    angle = canonical_angles(ev) if cfg.frame == "canonical" else np.zeros(n)
    frame_ev = rotate_events(ev, angle) if cfg.frame == "canonical" else ev
    out = np.empty((n, k_run, dim))
    for s in range(0, n, batch_size):
        part = frame_ev.subset(np.arange(s, min(n, s + batch_size)))
        b = part.to_batch(dev)
        x, coords, cond = encode(b, tm.stats, impact_parameters=cfg.impact_parameters)
        prepared = repeat_context(tm.model.encode(x, coords, b.mask, cond), k_run)
        noise = torch.from_numpy(event_noise(part.event_id, seed, k_run, dim)).to(dev)

        def head(z: torch.Tensor, t: torch.Tensor, prepared: tuple = prepared) -> torch.Tensor:
            return tm.model.step(z, t, *prepared)

        z = objective.sample(head, noise.reshape(-1, dim), steps, sampler)
        out[s:s + len(part)] = z.reshape(len(part), k_run, dim).double().cpu().numpy()
    if k_run != candidates:
        out = np.repeat(out, candidates, axis=1)
    if cfg.target_frame == "visible":
        # the coordinates are invariant under rotations about the beam: decode in the lab
        return decode_visible(out, ev.p4, ev.otype, tm.stats)
    scale = tm.stats.target_scale()
    nu = out * scale
    if cfg.frame == "canonical":  # back to the lab frame: rotate by -angle
        c, sn = np.cos(-angle)[:, None, None], np.sin(-angle)[:, None, None]
        v = nu.reshape(n, candidates, 2, 3)
        x, y = v[..., 0].copy(), v[..., 1].copy()
        v[..., 0], v[..., 1] = c * x - sn * y, sn * x + c * y
        nu = v.reshape(n, candidates, 6)
    return nu, None


def constraint_chi2(nu: NDArray[np.float64], inputs: Inputs,
                    rows: NDArray[np.int64]) -> NDArray[np.float64]:
    """chi^2 of each candidate (n, K) against the tau-mass and MET constraints (module doc)."""
    chi2 = np.zeros(nu.shape[:2])
    for k, (vis, mode) in enumerate(((inputs.vis_p, inputs.mode_p),
                                     (inputs.vis_m, inputs.mode_m))):
        v = vis[rows][:, None, :]
        p_nu = nu[..., 3 * k:3 * k + 3]
        nu4 = np.concatenate([p_nu, np.linalg.norm(p_nu, axis=-1)[..., None]], -1)  # m_nu = 0
        m_leg = mass(v + nu4)
        dm = m_leg - M_TAU
        hadronic = np.isin(mode[rows], _HADRONIC)[:, None]
        r = np.where(hadronic, dm, np.maximum(dm, 0.0)) / MASS_TOLERANCE
        chi2 += r**2
    d = inputs.met[rows][:, None, :] - (nu[..., 0:2] + nu[..., 3:5])
    cinv = np.linalg.inv(inputs.cov[rows])[:, None]
    chi2 += np.einsum("nki,nkij,nkj->nk", d, np.broadcast_to(cinv, (*d.shape[:2], 2, 2)), d)
    return chi2


def point_estimate(nu: NDArray[np.float64], inputs: Inputs, rows: NDArray[np.int64],
                   how: str = "median") -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The per-event point estimate (n, 6) from candidates (n, K, 6) and, for
    ``constraint``, the index of the chosen candidate (0-based; -1 for ``median``)."""
    if how == "median":
        return np.median(nu, axis=1), np.full(len(nu), -1, np.int64)
    if how == "constraint":
        best = np.argmin(constraint_chi2(nu, inputs, rows), axis=1)
        return nu[np.arange(len(nu)), best], best.astype(np.int64)
    raise ValueError(f"unknown point estimate {how!r}; choose one of {POINT_ESTIMATES}")


@dataclass
class Prediction:
    """What :func:`predict` returns for the events of ``inputs``.

    ``rows``: the events with usable inputs (indices into ``inputs``); for those: ``nu`` (m, K,
    6) candidates, ``point`` (m, 6), ``chosen`` (m,) candidate of the constraint estimate (-1
    for the median), ``nu_std`` (m, 6) and ``m_std`` (m,) the candidate spread (standard
    deviation over candidates of each neutrino component and of m_tautau; 0 for a
    ``regression`` model, whose candidates are identical), ``m_point`` (m,), ``on_shell``
    (m, K, 2) for a ``visible`` target-frame model: the leg's candidate is on the tau mass
    shell (False: no real solution, polar angle clamped), None for ``lab``.
    ``reason``: (n,) why an event is not usable ('' if it is).
    """

    inputs: Inputs
    rows: NDArray[np.int64]
    reason: NDArray[np.object_]
    nu: NDArray[np.float64]
    point: NDArray[np.float64]
    chosen: NDArray[np.int64]
    nu_std: NDArray[np.float64]
    m_std: NDArray[np.float64]
    m_point: NDArray[np.float64]
    on_shell: NDArray[np.bool_] | None = None


def _tables(inputs: Inputs | Any, table: Any) -> tuple[Inputs, Any]:
    if isinstance(inputs, Inputs):
        if table is None:
            raise ValueError("the ml method needs the event table (jet columns) besides the "
                             "Inputs: pass table=...")
        return inputs, table
    tbl = inputs if table is None else table
    return inputs_from_table(tbl), tbl


def predict(inputs: Inputs | Any, *, table: Any = None,
            model: str | os.PathLike[str] | TrainedModel | None = None, candidates: int = 10,
            steps: int | None = None, sampler: str | None = None, point: str = "median",
            seed: int = 0, device: str = "auto", batch_size: int = 4096,
            source: str = "ml inputs") -> Prediction:
    """Candidates, point estimate and spread per event (see :func:`ml` for the arguments;
    ``source``: the name of the table in error messages, e.g. its file).

    A model with ``impact_parameters`` reads :data:`~ditau.ml.features.IP_COLUMNS` from the
    table: without them, or with none for the usable events, a SchemaError names ``source``
    and the columns; single events whose legs lack them are not reconstructed (their
    ``reason`` says so). ``model=None``: :func:`ditau.ml.shipped.default_model` of the table
    (the default model, or the one for inputs without track impact parameters)."""
    if point not in POINT_ESTIMATES:
        raise ValueError(f"unknown point estimate {point!r}; choose one of {POINT_ESTIMATES}")
    inp, tbl = _tables(inputs, table)
    if model is None:  # the shipped default for these inputs (with or without track IPs)
        model = default_model(has_impact_parameters(tbl))
    tm = resolve_model(model, device)
    ev = extract(tbl, inputs=inp, source=source,
                 impact_parameters=tm.config.impact_parameters)
    rows = np.flatnonzero(ev.usable)
    nu, on_shell = sample_candidates(tm, ev.subset(rows), candidates=candidates, steps=steps,
                                     sampler=sampler, seed=seed, batch_size=batch_size)
    pt, chosen = point_estimate(nu, inp, rows, point)
    taus = [tau_four_momenta(v[rows][:, None, :], nu[..., 3 * k:3 * k + 3])
            for k, v in enumerate((inp.vis_p, inp.vis_m))]
    m_cand = mass((taus[0] + taus[1]).reshape(-1, 4)).reshape(len(rows), candidates)
    tp = tau_four_momenta(inp.vis_p[rows], pt[:, :3])
    tmm = tau_four_momenta(inp.vis_m[rows], pt[:, 3:])
    return Prediction(inp, rows, ev.reason, nu, pt, chosen, nu.std(axis=1), m_cand.std(axis=1),
                      mass(tp + tmm), on_shell)


def candidate_spread(recon: Any) -> dict[str, NDArray[Any]]:
    """Per-event spread of the candidates (rows with ``candidate`` >= 1 and status ok) of a
    method-output table: ``event_id``, ``n`` candidates, ``m_std`` (GeV) and
    ``nu_std_{px,py,pz}_{p,m}`` (standard deviations over the candidates)."""
    def col(name: str) -> NDArray[Any]:
        x = recon[name]
        return np.asarray(x.to_numpy(zero_copy_only=False) if hasattr(x, "to_numpy") else x)

    use = (col("candidate") >= 1) & (col("rec_status").astype(str) == "ok")
    ids = col("event_id")[use]
    uniq, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)

    def std(v: NDArray[np.float64]) -> NDArray[np.float64]:
        mean = np.bincount(inv, v, len(uniq)) / counts
        return np.sqrt(np.maximum(np.bincount(inv, v**2, len(uniq)) / counts - mean**2, 0.0))

    out: dict[str, NDArray[Any]] = {"event_id": uniq, "n": counts,
                                    "m_std": std(col("rec_m_tautau")[use].astype(float))}
    for leg in ("p", "m"):
        for c in ("px", "py", "pz"):
            out[f"nu_std_{c}_{leg}"] = std(col(f"rec_nu_{c}_{leg}")[use].astype(float))
    return out
