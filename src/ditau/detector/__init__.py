"""Detector stage: objects (leptons, tau_had candidates, jets) and MET at detector level.

Producers return :class:`~ditau.detector.candidates.Candidates`; :mod:`ditau.select` makes the
schema's reco columns from them.
"""

from ditau.detector.candidates import Candidates

__all__ = ["Candidates"]
