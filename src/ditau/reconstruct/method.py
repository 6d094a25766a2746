"""The reconstruction-method interface: the :class:`Method` protocol and the registry.

A method has a ``name``, the event-table ``columns`` it needs besides
:data:`~ditau.inputs.INPUT_COLUMNS`, a validated ``settings`` dataclass
(:class:`~ditau.config.StageConfig`), and is called on a :class:`Batch` (the inputs of a
chunk of events and the chunk's table) to return the method-output table
(:func:`~ditau.reconstruct.output.recon_table`: one row per event and candidate, in input
order, with ``rec_status``). Collinear, FastMTT, MMC and ML are registered in
:data:`METHODS`; :func:`make_method` builds one by name.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from ditau.config import StageConfig
from ditau.inputs import Inputs, inputs_from_table


@dataclass(frozen=True)
class Batch:
    """One chunk of events: ``inputs`` (:class:`~ditau.inputs.Inputs`, n events) and
    ``table`` (the event table of the chunk: INPUT_COLUMNS plus the method's columns)."""

    inputs: Inputs
    table: pa.Table

    @classmethod
    def from_table(cls, table: pa.Table, source: str = "table") -> Batch:
        """A batch from an event table (SchemaError naming ``source`` for missing columns)."""
        return cls(inputs_from_table(table, source=source), table)


@runtime_checkable
class Method(Protocol):
    """A reconstruction method (module doc)."""

    name: str
    columns: tuple[str, ...]
    settings: StageConfig

    def __call__(self, batch: Batch) -> pa.Table: ...


@dataclass(frozen=True)
class ArrayMethod:
    """A :class:`Method` over an array function ``func(inputs, [table=...], **settings)``."""

    name: str
    func: Callable[..., pa.Table]
    settings: StageConfig
    columns: tuple[str, ...] = ()

    def __call__(self, batch: Batch) -> pa.Table:
        kw = {f.name: getattr(self.settings, f.name)
              for f in dataclasses.fields(self.settings)}  # type: ignore[arg-type]
        if self.columns:
            kw["table"] = batch.table
        return self.func(batch.inputs, **kw)


@dataclass(frozen=True)
class _Entry:
    module: str
    function: str
    settings: str


#: Method name -> where it lives (imported when used, so that e.g. torch loads only for ml).
METHODS: dict[str, _Entry] = {
    "collinear": _Entry("ditau.reconstruct.collinear", "collinear", "CollinearSettings"),
    "fastmtt": _Entry("ditau.reconstruct.fastmtt", "fastmtt", "FastMTTSettings"),
    "mmc": _Entry("ditau.reconstruct.mmc", "mmc", "MMCSettings"),
    "ml": _Entry("ditau.reconstruct.ml", "ml", "MLSettings"),
}


def _module(name: str) -> Any:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    try:
        return importlib.import_module(METHODS[name].module)
    except ImportError as err:
        raise ValueError(f"method {name} not available ({err})") from err


def settings_class(name: str) -> type[StageConfig]:
    """The settings dataclass of method ``name``."""
    return getattr(_module(name), METHODS[name].settings)  # type: ignore[no-any-return]


def make_method(name: str, settings: StageConfig | Mapping[str, Any] | None = None) -> Method:
    """The registered method ``name`` with ``settings`` (an instance of its settings class, a
    mapping of its fields, or None for the defaults).

    Raises ValueError for an unknown method, an unknown setting (named) or an invalid value.
    """
    mod = _module(name)
    cls = settings_class(name)
    if settings is None:
        obj = cls()
    elif isinstance(settings, cls):
        obj = settings
    elif isinstance(settings, Mapping):
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"method {name}: unknown setting(s) {unknown}; settings are "
                             f"{known or 'none'}")
        obj = cls.from_dict(dict(settings), source=f"method {name}")
    else:
        raise ValueError(f"method {name}: settings must be a {cls.__name__} or a mapping, "
                         f"got {type(settings).__name__}")
    # a module may make its columns depend on the settings (columns_for), else EXTRA_COLUMNS
    columns = tuple(mod.columns_for(obj) if hasattr(mod, "columns_for")
                    else getattr(mod, "EXTRA_COLUMNS", ()))
    return ArrayMethod(name, getattr(mod, METHODS[name].function), obj, columns)


def get_method(name: str) -> Callable[..., pa.Table]:
    """The array function of method ``name`` (``func(inputs, **settings)``)."""
    return getattr(_module(name), METHODS[name].function)  # type: ignore[no-any-return]
