"""Reading stage configurations (dataclass fields) from YAML files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml


def load_mapping(path: str | Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The top-level ``option: value`` mapping of a YAML file; ``error`` names the file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise error(f"{p}: cannot read YAML config: {err}") from err
    if not isinstance(data, dict):
        raise error(f"{p}: top level must be a mapping of option: value")
    return data


def check_fields(cls: type, data: dict[str, Any], source: str,
                 error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``source`` if ``data`` has keys that are not fields of ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{source}: unknown key(s) {unknown}; known: {sorted(known)}")
