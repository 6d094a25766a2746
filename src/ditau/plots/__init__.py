"""Figures of ditau, in ATLAS style, written atomically as PNG.

- :mod:`ditau.plots.draw`: panels, binning, labels and the grid drawing
  (:func:`~ditau.plots.draw.draw_panels`) that every figure of the package uses;
- :mod:`ditau.plots.inputs`: the truth-vs-reco validation plots of the reconstruction inputs
  (:func:`~ditau.plots.inputs.plot_inputs`, ``ditau plot-inputs``).

The statistics behind the histograms (:func:`~ditau.stats.hist_content`,
:func:`~ditau.stats.weighted_quantiles`) live in :mod:`ditau.stats`, the kinematics in
:mod:`ditau.physics`; both are re-exported here for the modules that import them from
``ditau.plots``.
"""

from __future__ import annotations

from typing import Final

from ditau.physics import ANALYSIS_CHANNELS
from ditau.plots.draw import (
    ATLAS_TEXT,
    Binning,
    Panel,
    PlotError,
    channel_tex,
    com_tev,
    draw_panels,
    leg_tags,
    split_channel,
)
from ditau.plots.inputs import (
    HADRONIC,
    NEEDED_COLUMNS,
    check_channels,
    event_weights,
    first_leg_is_p,
    input_panels,
    load_inputs,
    neutral_fraction,
    plot_inputs,
    residual_panels,
    truth_met,
    visible_p4,
)
from ditau.stats import hist_content, weighted_quantiles

#: The channels that get plots: the registry's analysis channels (kept for old imports).
PLOT_CHANNELS: Final[tuple[str, ...]] = ANALYSIS_CHANNELS

#: Old private name of :func:`~ditau.plots.draw.com_tev` (kept for old imports).
_com_tev = com_tev

__all__ = [
    "ATLAS_TEXT", "HADRONIC", "NEEDED_COLUMNS", "PLOT_CHANNELS", "Binning", "Panel",
    "PlotError", "channel_tex", "check_channels", "com_tev", "draw_panels", "event_weights",
    "first_leg_is_p", "hist_content", "input_panels", "leg_tags", "load_inputs",
    "neutral_fraction", "plot_inputs", "residual_panels", "split_channel", "truth_met",
    "visible_p4", "weighted_quantiles",
]
