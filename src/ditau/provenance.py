"""Provenance: what every ditau file was made from, and the checks that joined files belong
together.

Every stage output records in its ``ditau`` footer metadata:

``run_id``
    its own identity, a hash of what produced it (stage, configuration, seeds and the run ids
    of its inputs; :func:`run_id`). Deterministic: the same inputs and settings give the same
    id, as they give the same bytes.
``event_ids``
    ``{"n", "sha256"}``, a checksum of its ``event_id`` column (written by
    :class:`~ditau.schema.EventWriter`).
``input_identity`` (one input) / ``input_identities`` (``merge``)
    the identity of each input (:func:`identity`): path, run id, stage, event-id checksum and
    generator seed.

Stages that join files (``evaluate``, ``merge``; ``tomography`` checks the visible momenta)
check them with :func:`check_recon_input` and friends. Files written before provenance was
recorded (no ``run_id``) are still accepted: the checks fall back to the event ids and say
so with a :class:`ProvenanceWarning`. A mismatch raises :class:`ProvenanceError` naming both
files and what differs; ``force=True`` turns it into a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow.parquet as pq

from ditau.schema import SchemaError, event_id_digest, read_metadata

#: Metadata keys.
RUN_ID: Final[str] = "run_id"
INPUT: Final[str] = "input_identity"
INPUTS: Final[str] = "input_identities"
EVENT_IDS: Final[str] = "event_ids"


class ProvenanceError(SchemaError):
    """Files given together do not belong together; the message names both and what
    differs."""


class ProvenanceWarning(UserWarning):
    """A provenance check was weaker than usual (files without run id) or overridden."""


def run_id(stage: str, payload: Mapping[str, Any]) -> str:
    """The run id of a ``stage`` output made from ``payload`` (its configuration, seeds and
    input identities; JSON-serialisable, paths and tuples as strings/lists): ``stage-`` and
    16 hex digits of the SHA-256 of the canonical JSON."""
    text = json.dumps({"stage": stage, **payload}, sort_keys=True, default=str)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def generator_seed(meta: Mapping[str, Any]) -> Any:
    """The generation seed of a file's events (generated, detector-level or merged), or
    None if not recorded."""
    for key in ("config", "input_config"):
        cfg = meta.get(key)
        if isinstance(cfg, Mapping) and "seed" in cfg:
            return cfg["seed"]
    return None


def identity(path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None,
             event_id_column: str = "event_id") -> dict[str, Any]:
    """The identity of the input file ``path`` as a stage records it: ``path``, ``run_id``
    (None for a file written before provenance or a foreign file), ``stage``, ``event_ids``
    (``{"n", "sha256"}`` from its metadata, else computed from its ``event_id_column``; None
    for a ROOT file or a file without the column) and ``seed`` (the generator seed, if
    recorded). ``meta``: its ditau metadata if already read (``{}`` for a foreign file)."""
    p = Path(path)
    m = dict(read_metadata(p) if meta is None else meta)
    ids = m.get(EVENT_IDS)
    if ids is None and p.suffix != ".root":
        ids = event_id_digest(p, event_id_column)
    return {"path": str(p), "run_id": m.get(RUN_ID), "stage": m.get("stage"),
            EVENT_IDS: ids, "seed": generator_seed(m)}


def input_key(ident: Mapping[str, Any]) -> Any:
    """What of an input identity goes into a run id: its run id, or (a file without one) its
    path and event-id checksum."""
    if ident.get("run_id"):
        return ident["run_id"]
    return {"path": ident.get("path"), EVENT_IDS: ident.get(EVENT_IDS)}


def report(problem: str, force: bool, hint: str = "") -> None:
    """Raise :class:`ProvenanceError` for ``problem`` (with ``hint``), or with ``force`` warn
    (:class:`ProvenanceWarning`) and go on."""
    if force:
        warnings.warn(f"{problem} (--force: going on)", ProvenanceWarning, stacklevel=3)
        return
    raise ProvenanceError(f"{problem}{'; ' + hint if hint else ''}")


def _describe_ids(ids: Mapping[str, Any] | None) -> str:
    if not ids:
        return "no event ids"
    return f"{ids.get('n')} event ids, checksum {ids.get('sha256')}"


def check_recon_input(events: str | os.PathLike[str], recon: str | os.PathLike[str], *,
                      recon_ids: Sequence[int] | np.ndarray | None = None,
                      event_ids: Sequence[int] | np.ndarray | None = None,
                      force: bool = False) -> str:
    """Check that the method-output file ``recon`` was made from the event file ``events``.

    The recon file's recorded input (``input_identity``) must be ``events``: the same run id,
    or, if either file has none (written before provenance), the same event-id checksum. A
    recon file without a recorded input is checked by its event ids only (``recon_ids`` must
    all be in ``event_ids``; both read from the files if not given) and a
    :class:`ProvenanceWarning` says so. Returns how the match was established (``run id``,
    ``event-id checksum``, ``event ids``). Raises :class:`ProvenanceError` naming both files
    and what differs, unless ``force`` (then a warning).
    """
    ev_meta, rec_meta = read_metadata(events), read_metadata(recon)
    hint = "give the event file it was reconstructed from, or --force to go on anyway"
    recorded = rec_meta.get(INPUT)
    if not isinstance(recorded, Mapping):
        if recon_ids is None:
            recon_ids = _ids(recon)
        if event_ids is None:
            event_ids = _ids(events)
        foreign = ~np.isin(np.asarray(recon_ids), np.asarray(event_ids))
        warnings.warn(f"{recon} was written before provenance was recorded (no input "
                      f"identity): checked against {events} by its event ids only",
                      ProvenanceWarning, stacklevel=2)
        if foreign.any():
            report(f"{recon} does not belong to {events}: "
                   f"{len(np.unique(np.asarray(recon_ids)[foreign]))} of its event ids are not "
                   "in that file", force, hint)
        return "event ids"
    made_from = recorded.get("path")
    ev_run, rec_in_run = ev_meta.get(RUN_ID), recorded.get("run_id")
    if ev_run and rec_in_run:
        if ev_run != rec_in_run:
            report(f"{recon} was reconstructed from {made_from} (run {rec_in_run}), not from "
                   f"{events} (run {ev_run})", force, hint)
        return "run id"
    ev_ids = ev_meta.get(EVENT_IDS) or event_id_digest(events)
    old = events if not ev_run else recon
    warnings.warn(f"{old} has no run id (written before provenance was recorded): {recon} "
                  f"checked against {events} by the event-id checksum only",
                  ProvenanceWarning, stacklevel=2)
    if recorded.get(EVENT_IDS) != ev_ids:
        report(f"{recon} was reconstructed from {made_from} "
               f"({_describe_ids(recorded.get(EVENT_IDS))}), not from {events} "
               f"({_describe_ids(ev_ids)})", force, hint)
    return "event-id checksum"


def _ids(path: str | os.PathLike[str]) -> np.ndarray:
    return np.asarray(pq.read_table(path, columns=["event_id"])["event_id"])


#: Generator settings that may differ between files of one sample (statistics, bookkeeping).
SAMPLE_FREE: Final[frozenset[str]] = frozenset({"seed", "events", "events_per_job",
                                                "batch_size"})
#: Generator settings added after files were first written, with the value every older file
#: was generated with (issue #14: the spin mode; older files are exact or, with
#: tau_spin_correlations false, unpolarised without weights: spin "exact").
GENERATOR_ADDED: Final[dict[str, Any]] = {"spin": "exact", "spin_state": "sm"}
#: Detector settings that may differ between files of one sample.
DETECTOR_FREE: Final[frozenset[str]] = frozenset({"seed", "chunk_size"})


def first_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first setting (dotted name) in which the mappings ``a`` and ``b`` differ, with
    both values; None if equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            d = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if d is not None:
                return d
        return None
    if a != b:
        return prefix.rstrip("."), a, b
    return None


def sample_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that define a file's sample (all files merged into one must share them):
    the generator configuration without the seed and event counts, and for detector-level
    files the detector configuration (without its seed), the selection and the systematic
    variation. A merged file: those of its first source (they were checked equal)."""
    if meta.get("stage") == "merge":
        sources = meta.get("merged_from") or []
        return sample_settings(sources[0].get("metadata", {})) if sources else {}
    out: dict[str, Any] = {}
    gen = meta.get("config") if meta.get("stage") == "generate" else meta.get("input_config")
    if gen is None and meta.get("merged_from"):
        # a detector-level file made from a merged file: its generator settings are those of
        # the merged file's first source (the merged file itself records no config)
        gen = _generator_config(meta["merged_from"][0].get("metadata", {}))
    if isinstance(gen, Mapping):
        out["generator"] = {k: v for k, v in {**GENERATOR_ADDED, **gen}.items()
                            if k not in SAMPLE_FREE}
    det = meta.get("detector_config")
    if isinstance(det, Mapping):
        out["detector"] = {k: v for k, v in det.items() if k not in DETECTOR_FREE}
    for key in ("select_config", "systematic"):
        if key in meta:
            out[key] = meta[key]
    return out


def _generator_config(meta: Mapping[str, Any]) -> Any:
    """The generator configuration recorded in a file's metadata (None if none)."""
    if meta.get("stage") == "generate":
        return meta.get("config")
    if meta.get("input_config") is not None:
        return meta.get("input_config")
    sources = meta.get("merged_from") or []
    return _generator_config(sources[0].get("metadata", {})) if sources else None


def job_seeds(meta: Mapping[str, Any]) -> list[int]:
    """The Pythia seeds of the generation jobs of a file's events (merged files, and files
    made from a merged file: of all the merged sources); empty if not recorded (e.g. a
    Delphes import)."""
    if meta.get("stage") == "merge" or (not meta.get("jobs") and meta.get("merged_from")):
        return [s for src in meta.get("merged_from") or []
                for s in job_seeds(src.get("metadata", {}))]
    return [int(j["seed"]) for j in meta.get("jobs") or [] if "seed" in j]
