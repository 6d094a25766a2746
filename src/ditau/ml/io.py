"""Model files and training checkpoints.

File layout (both kinds): 8-byte magic ``DITAUML1``, 8-byte kind (``model`` or
``ckpt``), the SHA-256 of the payload (32 bytes), then the payload: a ``torch.save`` of a dict
of tensors and plain values, read back with ``torch.load(weights_only=True)`` (no pickled
code is executed). A truncated or corrupted file fails the checksum and gives a
:class:`ModelFileError` naming the file; so does a model of another feature set
(:data:`ditau.ml.features.FEATURE_SET_ID`). Writes are atomic (temporary file + rename).

A model file holds: the EMA weights, the :class:`~ditau.ml.model.ModelConfig` (with the
objective and the target frame, ``lab`` or ``visible``, so that inference applies the right
inverse; files written before the target frame existed read as ``lab``), the names of the
targets the head predicts, the normalisation statistics (with the visible frame's per-coordinate
moments), the feature-set id, the training configuration, the data recipe (input files,
selection, split, event counts) and training information (step, losses). A model with
``impact_parameters`` also holds the impact-parameter feature-set id
(:data:`ditau.ml.features.IP_FEATURE_SET_ID`, key ``ip_feature_set``) and is refused by a
ditau that computes those features otherwise; files without the option (``ditau-cpu-v1``)
have no such key and read as before.

:func:`read_model_config` reads a model file's configuration without building the network
(what a model needs, its input columns, before it is loaded onto a device).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import torch

from ditau.ml.features import FEATURE_SET_ID, IP_FEATURE_SET_ID, NormStats
from ditau.ml.model import ModelConfig, NeutrinoModel
from ditau.ml.parametrisation import target_names
from ditau.schema import atomic_path

MAGIC: Final[bytes] = b"DITAUML1"
KINDS: Final[dict[str, bytes]] = {"model": b"model\0\0\0", "ckpt": b"ckpt\0\0\0\0"}
FORMAT_VERSION: Final[int] = 1


class ModelFileError(ValueError):
    """A model or checkpoint file cannot be used; the message names the file and why."""


def write_blob(path: str | os.PathLike[str], kind: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as a checksummed file of ``kind`` (atomic)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC + KINDS[kind] + hashlib.sha256(data).digest() + data)
    return Path(path)


def read_blob(path: str | os.PathLike[str], kind: str,
              map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a file written by :func:`write_blob`, checking magic, kind and checksum."""
    p = Path(path)
    what = "model" if kind == "model" else "checkpoint"
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ModelFileError(f"{p}: cannot read the {what} file: {err}") from err
    if len(raw) < 48 or raw[:8] != MAGIC:
        raise ModelFileError(f"{p}: not a ditau ML {what} file (wrong header; truncated, or "
                             "another format?)")
    if raw[8:16] != KINDS[kind]:
        other = next((k for k, v in KINDS.items() if v == raw[8:16]), "unknown")
        raise ModelFileError(f"{p}: is a ditau ML {other} file, expected a {what} file")
    data = raw[48:]
    if hashlib.sha256(data).digest() != raw[16:48]:
        raise ModelFileError(f"{p}: checksum mismatch: the {what} file is truncated or "
                             "corrupt")
    try:
        out = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for unreadable payloads
        raise ModelFileError(f"{p}: cannot load the {what} payload: {err}") from err
    if not isinstance(out, dict) or out.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{p}: unsupported {what} format version "
                             f"{out.get('format_version') if isinstance(out, dict) else '?'}")
    return out


@dataclass
class TrainedModel:
    """A loaded model: network (eval mode) and everything needed to use it."""

    model: NeutrinoModel
    config: ModelConfig
    stats: NormStats
    feature_set: str
    path: Path | None = None
    train_config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def save_model(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor],
               config: ModelConfig, stats: NormStats, *, train_config: dict[str, Any],
               data: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Write a model file (weights moved to CPU)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "feature_set": FEATURE_SET_ID,
        "model_config": config.to_dict(),
        "targets": list(target_names(config.target_frame)),
        "stats": stats.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "train_config": train_config,
        "data": data,
        "info": info or {},
    }
    if config.impact_parameters:
        payload["ip_feature_set"] = IP_FEATURE_SET_ID
    return write_blob(path, "model", payload)


def _model_config(p: Path, d: dict[str, Any]) -> ModelConfig:
    """The :class:`~ditau.ml.model.ModelConfig` of the payload ``d`` of the model file ``p``,
    checked against this ditau: the feature set, the configuration itself, the targets of
    its target frame and, for a model with impact parameters, their feature set. Raises
    :class:`ModelFileError` naming ``p``."""
    if d.get("feature_set") != FEATURE_SET_ID:
        raise ModelFileError(
            f"{p}: the model was trained with feature set {d.get('feature_set')!r}, this "
            f"ditau computes feature set {FEATURE_SET_ID!r}; retrain the model or use the "
            "ditau version it was trained with")
    try:
        cfg = ModelConfig.from_dict(dict(d["model_config"]), source=f"{p} model config")
        names = list(target_names(cfg.target_frame))
        if list(d.get("targets", names)) != names:
            raise ValueError(f"its targets {d['targets']} are not those of the "
                             f"{cfg.target_frame!r} target frame of this ditau ({names})")
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{p}: inconsistent model file: {err}") from err
    if cfg.impact_parameters and d.get("ip_feature_set") != IP_FEATURE_SET_ID:
        raise ModelFileError(
            f"{p}: the model was trained with impact-parameter features "
            f"{d.get('ip_feature_set')!r}, this ditau computes {IP_FEATURE_SET_ID!r}; "
            "retrain the model or use the ditau version it was trained with")
    return cfg


def read_model_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The :class:`~ditau.ml.model.ModelConfig` of the model file ``path`` (its architecture,
    objective, target frame, ``impact_parameters``, sampler defaults), without building the
    network or loading its weights into one: for what a model needs (its input columns)
    before it is loaded onto a device.

    The file is one checksummed payload (module docstring), so it is read and checked whole
    (header, kind, checksum, format version) and deserialised on the CPU
    (``torch.load(weights_only=True)``, weights included); the configuration is checked as
    :func:`load_model` checks it (feature set, targets, impact-parameter feature set).

    Raises :class:`ModelFileError` naming the file: missing or unreadable, not a model file,
    truncated or corrupt, of another feature set, or with an inconsistent configuration.
    """
    p = Path(path)
    return _model_config(p, read_blob(p, "model"))


def load_model(path: str | os.PathLike[str],
               device: str | torch.device = "cpu") -> TrainedModel:
    """Load a model file onto ``device`` (eval mode). Raises :class:`ModelFileError`."""
    p = Path(path)
    d = read_blob(p, "model")
    cfg = _model_config(p, d)
    try:
        stats = NormStats.from_dict(d["stats"])
        names = list(target_names(cfg.target_frame))
        if cfg.target_frame == "visible" and not (
                len(stats.target_mean) == len(stats.target_std) == len(names)):
            raise ValueError("the visible target frame needs the per-coordinate moments in "
                             "the normalisation statistics")
        model = NeutrinoModel(cfg)
        model.load_state_dict(d["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{p}: inconsistent model file: {err}") from err
    model.to(device).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    return TrainedModel(model, cfg, stats, d["feature_set"], p, dict(d.get("train_config", {})),
                        dict(d.get("data", {})), dict(d.get("info", {})))
