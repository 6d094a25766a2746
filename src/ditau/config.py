"""Stage configurations: frozen dataclasses readable from YAML, with unknown keys rejected.

:class:`StageConfig` is the one base of every stage's configuration (generation, detector,
selection, training, model, reconstruction-method settings): ``to_dict`` / ``from_dict`` /
``from_yaml`` live here once. A subclass converts YAML types to its field types in
``_convert`` (e.g. lists to tuples) and validates in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

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


def check_fields(cls: type, data: Mapping[str, Any], source: str,
                 error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``source`` if ``data`` has keys that are not fields of ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{source}: unknown key(s) {unknown}; known: {sorted(known)}")


def _plain(value: Any) -> Any:
    """A YAML/JSON-friendly copy: tuples -> lists, nested mappings and lists converted too."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class StageConfig:
    """Base of the stage configurations (use on a ``@dataclass(frozen=True)``).

    ``config_name`` names the configuration in messages when no source is given;
    ``config_error`` is the exception type raised for a bad configuration (a ValueError).
    """

    config_name: ClassVar[str] = "config"
    config_error: ClassVar[type[Exception]] = ValueError

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain mapping (tuples as lists), readable back by ``from_dict``."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload, no-any-return]

    @classmethod
    def _convert(cls, data: dict[str, Any], source: str) -> dict[str, Any]:
        """Convert YAML values to the field types (default: lists -> tuples)."""
        return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> Self:
        """A configuration from a mapping of field values.

        Raises ``config_error`` naming ``source`` for a key that is not a field, a value of the
        wrong kind, or one that fails the class's validation.
        """
        src = source or cls.config_name
        if not isinstance(data, Mapping):
            raise cls.config_error(f"{src}: expected a mapping of option: value, "
                                   f"got {type(data).__name__}")
        check_fields(cls, data, src, cls.config_error)
        d = cls._convert(dict(data), src)
        try:
            return cls(**d)
        except cls.config_error:
            raise
        except (TypeError, ValueError) as err:
            raise cls.config_error(f"{src}: {err}") from err

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        """A configuration from a YAML file of field values (errors name the file)."""
        return cls.from_dict(load_mapping(path, cls.config_error), source=str(path))
