"""Detector stage: objects (leptons, tau_had candidates, jets) and MET at detector level.

Producers (the parametric response, :mod:`.parametric`; the Delphes reader, :mod:`.delphes`)
return :class:`~ditau.objects.Candidates`; :mod:`ditau.select` makes the schema's reco
columns from them; :mod:`.run` is the stage (response + selection, chunked).
Layer: imports :mod:`ditau.objects`, :mod:`ditau.select`, :mod:`ditau.physics`,
:mod:`ditau.schema`, :mod:`ditau.stage`; :mod:`ditau.select` does not import it.
"""

from ditau.objects import Candidates

__all__ = ["Candidates"]
