"""Models shipped inside the package, so that ``ditau reconstruct --method ml`` and
``ditau demo`` work without training.

Each shipped model is a ``ditau train`` model file in ``ditau/ml/models/`` (EMA weights,
model and training configuration, normalisation statistics, feature-set id and the data
recipe: input files, selection, split, event counts) next to a Markdown card with the
generation commands and the measured resolution. :data:`DEFAULT_MODEL` is used when no model
is given.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Final

#: Model used by ``--method ml`` without ``--model`` (inputs with track impact parameters):
#: trained on CPU (2 cores) on Pythia events of this package's detector simulation, visible-
#: frame targets, impact-parameter inputs, flat in m_tautau; see models/ditau-cpu-v2.md.
DEFAULT_MODEL: Final[str] = "ditau-cpu-v2"
#: Model used without ``--model`` for inputs without track impact parameters (when
#: :data:`DEFAULT_MODEL` needs them): Delphes cards without track smearing, files of schema
#: < 1.3.0, generator files without vertices (their impact parameters are NaN).
NO_IP_MODEL: Final[str] = "ditau-cpu-v1"
#: Largest size allowed for a shipped model file (issue #5: weights <= 20 MB).
MAX_BYTES: Final[int] = 20 * 1024 * 1024


def models_dir() -> Path:
    """The folder of the shipped model files."""
    return Path(str(resources.files("ditau.ml") / "models"))


def shipped_models() -> list[str]:
    """Names of the shipped models (files ``NAME.pt`` in :func:`models_dir`)."""
    d = models_dir()
    return sorted(p.stem for p in d.glob("*.pt")) if d.is_dir() else []


def default_model(has_impact_parameters: bool) -> str:
    """The shipped model used without ``--model``: :data:`DEFAULT_MODEL`, or
    :data:`NO_IP_MODEL` for inputs without track impact parameters."""
    return DEFAULT_MODEL if has_impact_parameters else NO_IP_MODEL


def model_path(model: str | os.PathLike[str] | None) -> Path:
    """The file of ``model``: ``None`` -> the default shipped model; a path that exists, or
    that names a folder or ends in a file suffix -> itself; otherwise a shipped model's name
    (``ditau-cpu-v1``) -> its file (FileNotFoundError naming the shipped models if there is
    no such model)."""
    if model is None:
        return shipped_model_path()
    p = Path(model)
    if p.exists() or p.suffix or len(p.parts) > 1:
        return p
    return shipped_model_path(str(model))


def shipped_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of the shipped model ``name``; a clear error if it is not in this installation."""
    p = models_dir() / f"{name}.pt"
    if not p.is_file():
        have = ", ".join(shipped_models()) or "none"
        raise FileNotFoundError(f"no shipped ML model '{name}' in {models_dir()} (shipped: "
                                f"{have}); give a trained model file with --model")
    return p
