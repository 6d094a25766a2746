"""Event table -> point cloud, global condition and targets of the ML reconstruction.

An event is a cloud of up to 7 objects in fixed slots (:data:`OBJECTS`): each leg's charged
object (track or lepton) and neutral cluster (absent -> masked), then up to 3 jets. Objects are
kept as Cartesian four-momenta (lab frame, GeV) until :func:`encode`, so rotations are exact
linear maps; :func:`encode` turns them into per-object features (:data:`OBJECT_FEATURES`):
log(pT+1) and log(E+1) standardised, eta scaled, phi as (cos, sin), charge, one-hot type
(e, mu, charged pion, neutral, jet) and the leg flag (+1 tau+ leg, -1 tau- leg, 0 jet), plus
the kNN coordinates (eta, phi). Global condition (:data:`COND_FEATURES`): MET x/y divided by
one common scale, and the one-hot of the 7 channels. Targets: both legs' invisible
3-momenta ``nu_{px,py,pz}_{p,m}``, each divided by a scale (the ``lab`` target frame; the
``visible`` one, per-leg coordinates in the frame of the visible products, is built from
these, the nu masses and the point cloud by :mod:`ditau.ml.parametrisation`).

Normalisation (:class:`NormStats`, computed on the training set and stored with the model)
uses *scales only* for every Cartesian quantity, with one scale shared by x and y (per leg for
the targets, one for MET), so that a rotation about the beam axis and the rotation by pi
about the x axis commute exactly with the normalisation.

Frames (a model option): ``lab`` (the reference's: the network learns the azimuthal symmetry
from random rotations, :func:`augment`) and ``canonical`` (each event rotated about the beam
axis so that the tau+ leg's charged object has phi = 0; the sampled neutrinos are rotated
back, which makes the reconstruction exactly equivariant under azimuthal rotations whatever the
weights). Optional reflection augmentation: eta -> -eta together with phi -> -phi, i.e. the
rotation by pi about the x axis (py, pz -> -py, -pz). A pure eta mirror is a parity
transformation, which the Z's parity-violating couplings (tau polarisation) do not respect;
the rotation is a symmetry of the symmetric pp initial state.

Track impact parameters (a model option, ``ModelConfig.impact_parameters``; issue #16 item
3): each object gets :data:`IP_FEATURES` appended to its features (:func:`ip_features`): the
signed-log d0 and z0 sin(theta) of its track, the clipped significances d0/sigma(d0) and
z0/sigma(z0), and a 0/1 flag. Only the legs' charged objects (the tau_had track, the lepton)
carry impact parameters (schema columns :data:`IP_COLUMNS`, mm, lab frame, ATLAS perigee
convention w.r.t. the primary vertex); neutrals, jets and legs without them get zeros and flag
0. Under the augmentations: a rotation about the beam axis leaves d0 and z0 unchanged; the
rotation by pi about x, (x, y, z) -> (x, -y, -z) and (px, py, pz) -> (px, -py, -pz), turns
d0 = (y px - x py)/pT into ((-y) px - x (-py))/pT = -d0 (the point of closest approach and
the track direction both rotate) and z0 into -z0, with sin(theta) unchanged: every
impact-parameter feature but the flag changes sign (:func:`rotate_x_pi`). In the solenoid
field this is exact for the event rotated together with the field (B_z -> -B_z); in the fixed
field the helix adds d0 + d0' = -kappa w^2 (kappa = q 0.6e-3/pT[GeV] per mm at 2 T, w the
transverse flight along the track): 0.1 um for a 20 GeV track after a 2 mm flight, far
below the 10 um resolution (tests/test_ml_impact_inputs.py).

The feature definition is fingerprinted (:data:`FEATURE_SET_ID`); a model trained with another
feature set is refused on loading. The impact-parameter features have their own fingerprint
(:data:`IP_FEATURE_SET_ID`), stored in the model files that use them, so that models without
them (the shipped ``ditau-cpu-v1``) keep theirs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ditau.inputs import INPUT_COLUMNS, Inputs, inputs_from_table
from ditau.physics import ANALYSIS_CHANNELS, channel_of, mass, phi, pt_eta
from ditau.schema import SchemaError, column_array, column_names

#: Object slots of the point cloud.
OBJECTS: Final[tuple[str, ...]] = ("chg_p", "neu_p", "chg_m", "neu_m", "jet1", "jet2", "jet3")
N_OBJECTS: Final[int] = len(OBJECTS)
#: Object types (one-hot).
TYPES: Final[tuple[str, ...]] = ("e", "mu", "pi", "neutral", "jet")
#: The channels the model is conditioned on, in the order of their one-hot encoding. This order
#: is part of every trained model (and of :data:`FEATURE_SET_ID`): it is frozen here and differs
#: from the registry's (:data:`ditau.physics.ANALYSIS_CHANNELS`), whose set it must equal.
ONE_HOT_CHANNELS: Final[tuple[str, ...]] = (
    "pipi", "pirho", "rhorho", "epi", "erho", "mupi", "murho")
assert set(ONE_HOT_CHANNELS) == set(ANALYSIS_CHANNELS) \
    and len(ONE_HOT_CHANNELS) == len(ANALYSIS_CHANNELS)
OBJECT_FEATURES: Final[tuple[str, ...]] = (
    "log_pt", "eta", "cos_phi", "sin_phi", "log_e", "charge", *(f"is_{t}" for t in TYPES), "leg")
COND_FEATURES: Final[tuple[str, ...]] = (
    "met_x", "met_y", *(f"channel_{c}" for c in ONE_HOT_CHANNELS))
TARGETS: Final[tuple[str, ...]] = tuple(
    f"nu_{c}_{leg}" for leg in ("p", "m") for c in ("px", "py", "pz"))
#: Truth nu-system energies, read with the targets where present (the ``visible`` target frame
#: of :mod:`ditau.ml.parametrisation` needs them for the m_nunu of leptonic legs).
NU_ENERGY_COLUMNS: Final[tuple[str, ...]] = ("nu_e_p", "nu_e_m")
N_FEATURES: Final[int] = len(OBJECT_FEATURES)
N_COND: Final[int] = len(COND_FEATURES)
N_TARGETS: Final[int] = len(TARGETS)

_C: Final[tuple[str, ...]] = ("px", "py", "pz", "e")
#: Jet columns read besides the baselines' inputs.
JET_COLUMNS: Final[tuple[str, ...]] = tuple(f"jet{j}_{c}" for j in (1, 2, 3) for c in _C)
#: Every event-table column :func:`extract` reads (targets: :data:`TARGETS` in addition).
FEATURE_COLUMNS: Final[tuple[str, ...]] = (*INPUT_COLUMNS, *JET_COLUMNS)

FEATURE_SET_VERSION: Final[int] = 1
#: What the fingerprint covers: change any of it and old models are refused.
FEATURE_SET: Final[dict[str, Any]] = {
    "version": FEATURE_SET_VERSION,
    "objects": OBJECTS,
    "types": TYPES,
    "channels": ONE_HOT_CHANNELS,  # the key stays "channels": same fingerprint
    "object_features": OBJECT_FEATURES,
    "cond_features": COND_FEATURES,
    "targets": TARGETS,
    "normalisation": "log1p(pt,e) standardised; eta, MET, nu scaled (xy shared), no shifts",
    "energy": "E of the tau = sqrt(|p_vis + p_nu|^2 + m_tau^2)",
}
FEATURE_SET_ID: Final[str] = (
    f"v{FEATURE_SET_VERSION}-"
    + hashlib.sha256(json.dumps(FEATURE_SET, sort_keys=True).encode()).hexdigest()[:12])

#: Impact-parameter columns of the event schema (1.3.0) per leg: d0, z0 and their errors (mm).
IP_QUANTITIES: Final[tuple[str, ...]] = ("d0", "z0", "d0_err", "z0_err")
IP_COLUMNS: Final[tuple[str, ...]] = tuple(
    f"reco_{q}_{leg}" for leg in ("p", "m") for q in IP_QUANTITIES)
#: The per-object impact-parameter features (appended to :data:`OBJECT_FEATURES` by models
#: with ``impact_parameters``): see :func:`ip_features`.
IP_FEATURES: Final[tuple[str, ...]] = ("ip_d0", "ip_z0_sin_theta", "ip_d0_sig", "ip_z0_sig",
                                       "has_ip")
N_IP_FEATURES: Final[int] = len(IP_FEATURES)
#: Length scale of the signed-log impact parameters (mm): 10 um, the d0 resolution of
#: high-pT tracks (the constant term of :func:`ditau.detector.resolution.d0_resolution`).
IP_LOG_SCALE_MM: Final[float] = 0.010
#: Significances are clipped to +-IP_SIG_CLIP, then divided by IP_SIG_SCALE.
IP_SIG_CLIP: Final[float] = 50.0
IP_SIG_SCALE: Final[float] = 10.0
#: Slots of the objects that carry impact parameters: each leg's charged object.
IP_SLOTS: Final[tuple[int, ...]] = (OBJECTS.index("chg_p"), OBJECTS.index("chg_m"))
IP_FEATURE_SET: Final[dict[str, Any]] = {
    "version": 1,
    "columns": IP_COLUMNS,
    "slots": IP_SLOTS,
    "features": IP_FEATURES,
    "transform": f"sign(v) log1p(|v| / {IP_LOG_SCALE_MM} mm) for d0 and z0 sin(theta); "
                 f"clip(d0/err, +-{IP_SIG_CLIP}) / {IP_SIG_SCALE} (same for z0); zeros and "
                 "has_ip = 0 without all four finite values (errors > 0)",
    "usable": "both legs' charged objects need impact parameters",
}
IP_FEATURE_SET_ID: Final[str] = (
    "ip1-" + hashlib.sha256(json.dumps(IP_FEATURE_SET, sort_keys=True).encode()).hexdigest()[:12])


def n_object_features(impact_parameters: bool = False) -> int:
    """Width of the per-object features: :data:`N_FEATURES`, plus :data:`N_IP_FEATURES` with
    ``impact_parameters``."""
    return N_FEATURES + (N_IP_FEATURES if impact_parameters else 0)


@dataclass
class EventArrays:
    """Events as numpy arrays (lab frame, GeV).

    ``p4``: (n, 7, 4) object four-momenta (px, py, pz, E; 0 where absent); ``mask``: (n, 7)
    object present; ``otype``: (n, 7) index into :data:`TYPES` (-1 absent); ``leg``: (n, 7)
    +1/-1/0; ``met``: (n, 2); ``channel``: (n,) index into :data:`ONE_HOT_CHANNELS` (-1: none of
    them); ``target``: (n, 6) :data:`TARGETS` or None; ``nu_mass``: (n, 2) the
    nu-system masses of the tau+ and tau- legs (GeV, from the truth momenta and energies
    ``nu_e_p``, ``nu_e_m``, in float64 here: in float32 E^2 - p^2 of a TeV nu system is
    meaningless; with the targets where the table has the energies, else None; the
    ``visible`` target frame needs them); ``usable``: the event can be fed to the model;
    ``reason``: why not ('' if usable); ``ip``: (n, 7, 4) the objects' track impact parameters
    d0, z0, sigma(d0), sigma(z0) (mm, lab frame, w.r.t. the primary vertex; 0 where
    ``has_ip`` is False) and ``has_ip``: (n, 7) the object has all four (only the legs' charged
    objects can), both None unless read with ``impact_parameters``; ``m_true``: (n,) the true
    m_tautau (GeV; truth column ``m_tautau``), set by the training data reader where the mass
    weighting needs it, else None.
    """

    event_id: NDArray[np.int64]
    p4: NDArray[np.float64]
    mask: NDArray[np.bool_]
    otype: NDArray[np.int8]
    leg: NDArray[np.int8]
    met: NDArray[np.float64]
    channel: NDArray[np.int8]
    usable: NDArray[np.bool_]
    reason: NDArray[np.object_]
    target: NDArray[np.float64] | None = None
    nu_mass: NDArray[np.float64] | None = None
    ip: NDArray[np.float64] | None = None
    has_ip: NDArray[np.bool_] | None = None
    m_true: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.event_id)

    def subset(self, idx: NDArray[Any]) -> EventArrays:
        """The events ``idx`` (indices or a boolean mask)."""
        return EventArrays(**{f.name: (None if getattr(self, f.name) is None
                                       else getattr(self, f.name)[idx]) for f in fields(self)})

    def to_batch(self, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Batch:
        """Tensors of these events (float ``dtype``) on ``device``."""
        def f(x: NDArray[Any]) -> Tensor:
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)

        def i(x: NDArray[Any]) -> Tensor:
            return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.long, device=device)

        return Batch(f(self.p4), torch.as_tensor(self.mask, device=device), i(self.otype),
                     f(self.leg), f(self.met), i(self.channel),
                     None if self.target is None else f(self.target),
                     None if self.nu_mass is None else f(self.nu_mass),
                     None if self.ip is None else f(self.ip),
                     None if self.has_ip is None else torch.as_tensor(self.has_ip,
                                                                      device=device))


@dataclass
class Batch:
    """The tensors of :class:`EventArrays` (float32 unless asked otherwise; ``mask`` and
    ``has_ip`` bool, ``otype`` and ``channel`` long)."""

    p4: Tensor
    mask: Tensor
    otype: Tensor
    leg: Tensor
    met: Tensor
    channel: Tensor
    target: Tensor | None = None
    nu_mass: Tensor | None = None
    ip: Tensor | None = None
    has_ip: Tensor | None = None

    def __len__(self) -> int:
        return int(self.p4.shape[0])

    def index(self, idx: Tensor) -> Batch:
        """The events ``idx``."""
        return Batch(*(None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
                       for f in fields(self)))

    def replace(self, **changes: Tensor) -> Batch:
        return Batch(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


#: The start of the reason of an event left out because a leg has no impact parameters.
NO_IP_REASON: Final[str] = "no track impact parameters"


def ip_columns_error(source: str, detail: str) -> SchemaError:
    """The error for impact parameters a model needs and ``source`` does not give."""
    return SchemaError(
        f"{source}: the ML model uses track impact parameters ({', '.join(IP_COLUMNS)}), but "
        f"{detail}; files of schema < 1.3.0 and Delphes files without the track-smearing "
        "branches (D0, DZ, ErrorD0, ErrorDZ) have none: run them through a detector that "
        "writes them, or use a model trained without impact parameters")


def has_impact_parameters(table: Any) -> bool:
    """True if ``table`` (pyarrow Table, dict of arrays, ...) has every column of
    :data:`IP_COLUMNS` and at least one finite d0 (a file of schema 1.3.0 made from generator
    files without vertices has the columns, all NaN)."""
    names = set(column_names(table))
    if not set(IP_COLUMNS) <= names:
        return False
    return any(bool(np.any(np.isfinite(np.asarray(column_array(table, f"reco_d0_{leg}"),
                                                  dtype=np.float64))))
               for leg in ("p", "m"))


def check_ip_columns(names: Any, source: str) -> None:
    """Raise :func:`ip_columns_error` if any of :data:`IP_COLUMNS` is not in ``names``."""
    missing = [c for c in IP_COLUMNS if c not in set(names)]
    if missing:
        raise ip_columns_error(source, f"it has no column(s) {missing}")


def _read_ip(table: Any, mask: NDArray[np.bool_]) -> tuple[NDArray[np.float64],
                                                         NDArray[np.bool_]]:
    """(n, 7, 4) impact parameters (d0, z0, sigma(d0), sigma(z0); mm; 0 where unknown) and
    (n, 7) has_ip of the legs' charged objects (present, four finite values, errors > 0)."""
    n = mask.shape[0]
    ip = np.zeros((n, N_OBJECTS, len(IP_QUANTITIES)))
    has = np.zeros((n, N_OBJECTS), bool)
    for slot, leg in zip(IP_SLOTS, ("p", "m"), strict=True):
        v = np.stack([column_array(table, f"reco_{q}_{leg}").astype(np.float64)
                      for q in IP_QUANTITIES], axis=1)
        ok = mask[:, slot] & np.all(np.isfinite(v), axis=1) & (v[:, 2] > 0) & (v[:, 3] > 0)
        ip[:, slot] = np.where(ok[:, None], v, 0.0)
        has[:, slot] = ok
    return ip, has


def extract(table: Any, *, inputs: Inputs | None = None, targets: bool = False,
            source: str = "table", impact_parameters: bool = False) -> EventArrays:
    """:class:`EventArrays` from an event table (pyarrow or mapping of columns) with the
    :data:`FEATURE_COLUMNS` (and :data:`TARGETS` with ``targets``; the nu energies
    ``nu_e_p``, ``nu_e_m`` are read too where the table has them).

    ``inputs``: the baselines' :class:`~ditau.reconstruct.output.Inputs` of the same table, if
    already built (its bad-input reasons are reused). An event is usable if its inputs are good,
    its channel is one of :data:`ONE_HOT_CHANNELS` and (with ``targets``) its targets are finite.

    ``impact_parameters``: also read :data:`IP_COLUMNS` (``ip``, ``has_ip``) for a model that
    uses them. Then an event is usable only if both legs' charged objects have impact
    parameters (else its reason says which leg lacks them: such a leg is never fed to the
    model as zeros), and a table without the columns, or with none for any usable event, is
    a :class:`~ditau.schema.SchemaError` naming ``source`` and the columns.
    """
    need = list(FEATURE_COLUMNS) + (list(TARGETS) if targets else [])
    missing = [c for c in need if c not in set(column_names(table))]
    if missing:
        what = "truth" if set(missing) <= set(TARGETS) else "detector-level"
        raise SchemaError(f"{source}: missing {what} column(s) {missing[:6]} needed by the ML "
                          "reconstruction")
    inp = inputs if inputs is not None else inputs_from_table(table, source=source)
    n = len(inp)
    if len(column_array(table, "event_id")) != n:
        raise ValueError(f"{source}: the inputs ({n} events) and the table "
                         f"({len(column_array(table, 'event_id'))} rows) do not match")

    def p4_of(prefix: str, suffix: str) -> NDArray[np.float64]:
        return np.stack([column_array(table, f"{prefix}{c}{suffix}").astype(np.float64)
                         for c in _C], 1)

    slots = [p4_of("reco_chg_", "_p"), p4_of("reco_neu_", "_p"), p4_of("reco_chg_", "_m"),
             p4_of("reco_neu_", "_m"), *(p4_of(f"jet{j}_", "") for j in (1, 2, 3))]
    p4 = np.stack(slots, axis=1)
    mask = np.all(np.isfinite(p4), axis=2) & (p4[..., 3] > 0)
    p4 = np.where(mask[..., None], p4, 0.0)
    otype = np.full((n, N_OBJECTS), -1, np.int8)
    for slot, mode in ((0, inp.mode_p), (2, inp.mode_m)):
        otype[:, slot] = np.select([mode == "e", mode == "mu"], [0, 1], TYPES.index("pi"))
    otype[:, [1, 3]] = TYPES.index("neutral")
    otype[:, 4:] = TYPES.index("jet")
    otype[~mask] = -1
    leg = np.tile(np.array([1, 1, -1, -1, 0, 0, 0], np.int8), (n, 1))
    ch_name = channel_of(inp.mode_p, inp.mode_m)
    channel = np.full(n, -1, np.int8)
    for k, c in enumerate(ONE_HOT_CHANNELS):
        channel[ch_name == c] = k
    reason = inp.bad.copy()
    usable = inp.good.copy()
    no_ch = usable & (channel < 0)
    reason[no_ch] = [f"legs {a}/{b} (channel {c}) are not one of the ML model's channels"
                     for a, b, c in zip(inp.mode_p[no_ch], inp.mode_m[no_ch], ch_name[no_ch],
                                        strict=True)]
    usable &= channel >= 0
    usable &= mask[:, 0] & mask[:, 2]
    ip = has_ip = None
    if impact_parameters:
        check_ip_columns(column_names(table), source)
        ip, has_ip = _read_ip(table, mask)
        if usable.any() and not has_ip[usable][:, list(IP_SLOTS)].any():
            raise ip_columns_error(source, f"they are NaN (or the errors not > 0) for all "
                                   f"{int(usable.sum())} usable event(s)")
        for slot, name in zip(IP_SLOTS, ("tau+", "tau-"), strict=True):
            no_ip = usable & ~has_ip[:, slot]
            reason[no_ip] = f"{NO_IP_REASON} for the {name} leg (the ML model uses them)"
            usable &= ~no_ip
    target = nu_mass = None
    if targets:
        target = np.stack([column_array(table, c).astype(np.float64) for c in TARGETS], axis=1)
        target_all = target
        if set(NU_ENERGY_COLUMNS) <= set(column_names(table)):
            nu_e = np.stack([column_array(table, c).astype(np.float64)
                             for c in NU_ENERGY_COLUMNS], axis=1)
            nu4 = np.concatenate([target.reshape(-1, 2, 3), nu_e[..., None]], axis=-1)
            nu_mass = mass(nu4.reshape(-1, 4)).reshape(-1, 2)  # m^2 < 0 (rounding) -> 0
            target_all = np.concatenate([target, nu_e], axis=1)
        bad_t = usable & ~np.all(np.isfinite(target_all), axis=1)
        reason[bad_t] = "invisible momenta (truth) not finite"
        usable &= ~bad_t
    met = np.where(np.isfinite(inp.met), inp.met, 0.0)
    return EventArrays(inp.event_id, p4, mask, otype, leg, met, channel, usable, reason, target,
                       nu_mass, ip, has_ip)


# --------------------------------------------------------------------------------------------
# Normalisation


@dataclass(frozen=True)
class NormStats:
    """Normalisation constants, computed on the training set (:func:`compute_stats`).

    ``target_mean``, ``target_std``: per-coordinate moments of the ``visible`` target frame
    (8 each, :data:`ditau.ml.parametrisation.VISIBLE_TARGETS`); empty for the ``lab`` frame,
    whose targets use the ``nu_*_scale`` divisors only (and then absent from
    :meth:`to_dict`, so lab-frame files are unchanged).
    """

    log_pt_mean: float
    log_pt_std: float
    log_e_mean: float
    log_e_std: float
    eta_scale: float
    met_scale: float
    nu_xy_scale_p: float
    nu_z_scale_p: float
    nu_xy_scale_m: float
    nu_z_scale_m: float
    target_mean: tuple[float, ...] = ()
    target_std: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain values (floats; the target moments as lists, left out when empty)."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if isinstance(v, tuple):
                if v:
                    out[k] = [float(x) for x in v]
            else:
                out[k] = float(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormStats:
        """Inverse of :meth:`to_dict` (files without target moments: empty)."""
        vals: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in ("target_mean", "target_std"):
                vals[f.name] = tuple(float(x) for x in data.get(f.name, ()))
            else:
                vals[f.name] = float(data[f.name])
        return cls(**vals)

    def target_scale(self) -> NDArray[np.float64]:
        """(6,) divisors of :data:`TARGETS` (x and y share a scale per leg)."""
        return np.array([self.nu_xy_scale_p, self.nu_xy_scale_p, self.nu_z_scale_p,
                         self.nu_xy_scale_m, self.nu_xy_scale_m, self.nu_z_scale_m])


def compute_stats(ev: EventArrays) -> NormStats:
    """Normalisation constants from the usable events of ``ev`` (with targets)."""
    if ev.target is None:
        raise ValueError("normalisation statistics need the targets")
    u = ev.usable
    if not u.any():
        raise ValueError("no usable events to compute the normalisation from")
    p4, m = ev.p4[u], ev.mask[u]
    px, py, pz = p4[..., 0][m], p4[..., 1][m], p4[..., 2][m]
    pt, eta = pt_eta(px, py, pz)
    eta = np.where(pt > 0, eta, np.arcsinh(pz / 1e-9))  # pT = 0: finite, as encode's clamp
    lpt, le = np.log1p(pt), np.log1p(p4[..., 3][m])
    t = ev.target[u]

    def floor(x: float) -> float:
        return float(max(x, 1e-6))

    def rms(x: NDArray[np.float64]) -> float:
        return floor(float(np.sqrt(np.mean(x**2))))

    return NormStats(
        log_pt_mean=float(lpt.mean()), log_pt_std=floor(float(lpt.std())),
        log_e_mean=float(le.mean()), log_e_std=floor(float(le.std())),
        eta_scale=rms(eta), met_scale=rms(ev.met[u]),
        nu_xy_scale_p=rms(t[:, 0:2]), nu_z_scale_p=rms(t[:, 2]),
        nu_xy_scale_m=rms(t[:, 3:5]), nu_z_scale_m=rms(t[:, 5]),
    )


# --------------------------------------------------------------------------------------------
# Frames and augmentation (torch; exact linear maps on the Cartesian momenta)
#
# The torch code below (rotations, _wrap, encode's pT/eta/phi) keeps its own torch formulas:
# it runs inside the network's graph (autograd, GPU, ONNX export), where the numpy four-vector
# layer ditau.physics cannot go. numpy code of this module uses ditau.physics.


def _rot_xy(v: Tensor, c: Tensor, s: Tensor) -> Tensor:
    """Rotate the leading (x, y) of the last axis of ``v`` by the angle with cos c, sin s."""
    x, y = v[..., 0], v[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y, *v[..., 2:].unbind(-1)], dim=-1)


def rotate_z(batch: Batch, angle: Tensor) -> Batch:
    """Rotate every event of ``batch`` about the beam axis by ``angle`` (B,): objects, MET and
    targets together (phi -> phi + angle)."""
    c, s = torch.cos(angle).to(batch.p4.dtype), torch.sin(angle).to(batch.p4.dtype)
    p4 = _rot_xy(batch.p4, c[:, None], s[:, None])
    met = _rot_xy(batch.met, c, s)
    target = None
    if batch.target is not None:
        t = batch.target.reshape(-1, 2, 3)
        target = _rot_xy(t, c[:, None], s[:, None]).reshape(-1, 6)
    return batch.replace(p4=p4, met=met, target=target)


def rotate_x_pi(batch: Batch, flip: Tensor) -> Batch:
    """Rotate the events with ``flip`` (B,) bool by pi about the x axis: (py, pz) -> -(py, pz),
    i.e. eta -> -eta and phi -> -phi (a proper rotation, unlike a pure eta mirror). Impact
    parameters: (d0, z0) -> -(d0, z0), errors unchanged (module doc: d0 = (y px - x py)/pT
    with y, py -> -y, -py changes sign; z0 is a z difference)."""
    sgn = 1.0 - 2.0 * flip.to(batch.p4.dtype)
    one = torch.ones_like(sgn)
    p4 = batch.p4 * torch.stack([one, sgn, sgn, one], -1)[:, None, :]
    met = batch.met * torch.stack([one, sgn], -1)
    target = None
    if batch.target is not None:
        target = batch.target * torch.stack([one, sgn, sgn] * 2, -1)
    ip = None
    if batch.ip is not None:
        ip = batch.ip * torch.stack([sgn, sgn, one, one], -1)[:, None, :]
    return batch.replace(p4=p4, met=met, target=target, ip=ip)


def canonical_angle(p4: Tensor) -> Tensor:
    """The rotation about the beam axis that puts the tau+ leg's charged object at phi = 0."""
    return -torch.atan2(p4[:, 0, 1], p4[:, 0, 0])


def augment(batch: Batch, generator: torch.Generator, *, rotate: bool = True,
            reflect: bool = False) -> Batch:
    """Random rotation about the beam axis (uniform angle) and, with ``reflect``, the rotation
    by pi about x with probability 1/2; the same transformation for inputs, MET and targets.
    Random numbers come from ``generator`` only (seeded: same seed, same batch)."""
    n, dev = len(batch), batch.p4.device
    if rotate:
        angle = torch.rand(n, generator=generator, device=dev) * (2 * torch.pi)
        batch = rotate_z(batch, angle)
    if reflect:
        batch = rotate_x_pi(batch, torch.rand(n, generator=generator, device=dev) < 0.5)
    return batch


# --------------------------------------------------------------------------------------------
# Encoding


def _wrap(x: Tensor) -> Tensor:
    """Angle wrapped into [-pi, pi) (floor form, exportable to ONNX)."""
    return x - 2 * torch.pi * torch.floor((x + torch.pi) / (2 * torch.pi))


def ip_features(batch: Batch) -> Tensor:
    """The impact-parameter features (B, 7, :data:`N_IP_FEATURES`) of ``batch`` (which needs
    ``ip`` and ``has_ip``: :func:`extract` with ``impact_parameters``), in
    :data:`IP_FEATURES` order:

    - ``ip_d0`` = sign(d0) log1p(|d0| / :data:`IP_LOG_SCALE_MM`), ``ip_z0_sin_theta`` the same
      of z0 sin(theta) (theta of the object's momentum): d0 spans the 10 um resolution, the
      tens of um of tau daughters (the ~2 mm flight times the ~1/gamma opening angle, about
      c tau = 87 um; median |d0| 20-30 um after the detector) and mm tails (long flights,
      mismeasured tracks); the log keeps the resolution-scale values nearly linear and
      compresses the tails, the sign carries the geometry (the side of the track the tau
      flew on), and z0 sin(theta) is the longitudinal distance perpendicular to the track,
      comparable across eta like d0 (z0 itself grows as 1/sin(theta));
    - ``ip_d0_sig`` = clip(d0 / sigma(d0), +-:data:`IP_SIG_CLIP`) / :data:`IP_SIG_SCALE`,
      ``ip_z0_sig`` the same of z0: how far from prompt in units of the track's resolution
      (tau daughters: a few sigma in d0); clipped because beyond ~50 sigma the size only tells
      "displaced" and non-Gaussian tails (interactions, mismeasured tracks) would otherwise
      dominate the inputs, scaled to O(1);
    - ``has_ip``: 1 where the object has impact parameters (the legs' charged objects),
      else 0, with the four values above 0.

    All are odd in (d0, z0) but the flag, so :func:`rotate_x_pi` flips their signs; rotations
    about the beam leave them unchanged.
    """
    if batch.ip is None or batch.has_ip is None:
        raise ValueError("the batch has no impact parameters: read the events with "
                         "extract(..., impact_parameters=True)")
    d0, z0, err_d0, err_z0 = batch.ip.unbind(-1)
    px, py, pz = batch.p4[..., 0], batch.p4[..., 1], batch.p4[..., 2]
    pt = torch.hypot(px, py)
    sin_theta = pt / torch.sqrt(pt**2 + pz**2).clamp_min(1e-12)  # sin theta = pT / |p|

    def slog(v: Tensor) -> Tensor:
        return torch.sign(v) * torch.log1p(v.abs() / IP_LOG_SCALE_MM)  # sign(v) log1p(|v|/s)

    def sig(v: Tensor, err: Tensor) -> Tensor:
        return (v / err.clamp_min(1e-12)).clamp(-IP_SIG_CLIP, IP_SIG_CLIP) / IP_SIG_SCALE

    has = (batch.has_ip & batch.mask).to(batch.ip.dtype)
    f = torch.stack([slog(d0), slog(z0 * sin_theta), sig(d0, err_d0), sig(z0, err_z0),
                     torch.ones_like(d0)], dim=-1)
    return f * has[..., None]


def encode(batch: Batch, stats: NormStats, *,
           impact_parameters: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Network inputs of ``batch``: object features (B, 7, :data:`N_FEATURES`; with
    ``impact_parameters`` :data:`N_IP_FEATURES` more, :func:`ip_features`), kNN
    coordinates (eta, phi) (B, 7, 2) and the global condition (B, :data:`N_COND`). Masked
    objects have all-zero features."""
    p4, mask = batch.p4, batch.mask
    px, py, pz, e = p4.unbind(-1)
    pt = torch.hypot(px, py)
    eta = torch.asinh(pz / pt.clamp_min(1e-6))  # eta = asinh(pz / pT)
    phi = torch.atan2(py, px)
    safe = pt.clamp_min(1e-6)
    onehot = torch.nn.functional.one_hot(batch.otype.clamp_min(0), len(TYPES)).to(p4.dtype)
    charged = onehot[..., :3].sum(-1)
    x = torch.cat([
        ((torch.log1p(pt) - stats.log_pt_mean) / stats.log_pt_std)[..., None],
        (eta / stats.eta_scale)[..., None],
        (px / safe)[..., None], (py / safe)[..., None],  # cos phi, sin phi
        ((torch.log1p(e.clamp_min(0)) - stats.log_e_mean) / stats.log_e_std)[..., None],
        (batch.leg * charged)[..., None],  # charge: the leg's sign for its charged object
        onehot, batch.leg[..., None],
    ], dim=-1)
    x = x * mask[..., None].to(x.dtype)
    if impact_parameters:
        x = torch.cat([x, ip_features(batch).to(x.dtype)], dim=-1)
    coords = torch.stack([eta, phi], -1) * mask[..., None].to(x.dtype)
    ch = torch.nn.functional.one_hot(batch.channel.clamp_min(0),
                                     len(ONE_HOT_CHANNELS)).to(p4.dtype)
    ch = ch * (batch.channel >= 0)[:, None].to(p4.dtype)
    cond = torch.cat([batch.met / stats.met_scale, ch], dim=-1)
    return x, coords, cond


def target_scale(stats: NormStats, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """(6,) tensor of the target divisors."""
    return torch.as_tensor(stats.target_scale(), dtype=dtype, device=device)


def rotate_events(ev: EventArrays, angle: NDArray[np.float64]) -> EventArrays:
    """numpy (float64) counterpart of :func:`rotate_z`: objects, MET and targets of every
    event rotated about the beam axis by ``angle`` (n,)."""
    c, s = np.cos(angle), np.sin(angle)

    def rot(v: NDArray[np.float64], cc: NDArray[np.float64],
            ss: NDArray[np.float64]) -> NDArray[np.float64]:
        out = v.copy()
        out[..., 0] = cc * v[..., 0] - ss * v[..., 1]  # x' = x cos a - y sin a
        out[..., 1] = ss * v[..., 0] + cc * v[..., 1]  # y' = x sin a + y cos a
        return out

    target = None
    if ev.target is not None:
        target = rot(ev.target.reshape(-1, 2, 3), c[:, None], s[:, None]).reshape(-1, 6)
    # the impact parameters (d0, z0) are invariant under rotations about the beam axis
    return replace(ev, p4=rot(ev.p4, c[:, None], s[:, None]), met=rot(ev.met, c, s),
                   target=target)


def canonical_angles(ev: EventArrays) -> NDArray[np.float64]:
    """numpy counterpart of :func:`canonical_angle` (float64)."""
    return -phi(ev.p4[:, 0, 0], ev.p4[:, 0, 1])
