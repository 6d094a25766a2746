"""Reconstruction of the tau momenta: the method interface, the methods and the stage runner.

Layer: imports :mod:`ditau.inputs`, :mod:`ditau.schema`, :mod:`ditau.physics`,
:mod:`ditau.stage` and (for the ``ml`` method only) :mod:`ditau.ml`; nothing imports it but
the CLI, the demo and the benchmarks.

- :mod:`.method`: the :class:`Method` protocol, :class:`Batch`, the registry :data:`METHODS`
  and :func:`make_method`;
- :mod:`.collinear`, :mod:`.fastmtt`, :mod:`.mmc` (+ :mod:`.mmc_pdfs`), :mod:`.ml`: the methods,
  each an array function with its settings dataclass;
- :mod:`.output`: the method-output table (:func:`recon_table`, :func:`read_recon`,
  :func:`write_recon`);
- :mod:`.runner`: :func:`reconstruct`, the chunked, Dask-capable stage.
"""

from ditau.inputs import INPUT_COLUMNS, Inputs, inputs_from_table, read_inputs
from ditau.reconstruct.method import (
    METHODS,
    ArrayMethod,
    Batch,
    Method,
    get_method,
    make_method,
    settings_class,
)
from ditau.reconstruct.output import read_recon, recon_schema, recon_table, write_recon
from ditau.reconstruct.runner import ReconstructSummary, reconstruct, run_on_table

__all__ = [
    "INPUT_COLUMNS", "METHODS", "ArrayMethod", "Batch", "Inputs", "Method",
    "ReconstructSummary", "get_method", "inputs_from_table", "make_method",
    "read_inputs", "read_recon", "recon_schema", "recon_table", "reconstruct",
    "run_on_table", "settings_class", "write_recon",
]
