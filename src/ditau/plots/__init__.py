"""Figures of ditau, in ATLAS style, written atomically as PNG.

- :mod:`ditau.plots.draw`: panels, binning, labels and the grid drawing
  (:func:`~ditau.plots.draw.draw_panels`) that every figure of the package uses;
- :mod:`ditau.plots.inputs`: the truth-vs-reco validation plots of the reconstruction inputs
  (:func:`~ditau.plots.inputs.plot_inputs`, ``ditau plot-inputs``).

The statistics behind the histograms (:func:`~ditau.stats.hist_content`,
:func:`~ditau.stats.weighted_quantiles`) live in :mod:`ditau.stats`, the kinematics in
:mod:`ditau.physics`, the channel names in :mod:`ditau.physics.channels`.
"""

from __future__ import annotations

from ditau.plots.draw import PlotError
from ditau.plots.inputs import plot_inputs

__all__ = ["PlotError", "plot_inputs"]
