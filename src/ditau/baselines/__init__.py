"""Classical di-tau reconstruction (collinear approximation, MMC, FastMTT): one interface.

Each method takes :class:`~ditau.baselines.common.Inputs` and returns a method-output table
(:func:`~ditau.baselines.common.recon_table`) keyed by ``event_id``.
"""

from ditau.baselines.common import Inputs, inputs_from_table, read_inputs, recon_table

__all__ = ["Inputs", "inputs_from_table", "read_inputs", "recon_table"]
