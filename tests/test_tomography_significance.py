"""Significance vs luminosity: scaling laws, dilution by background, combination, systematics."""

import numpy as np
import pytest

from ditau.tomography.significance import (
    ChannelInput,
    combine,
    impact_table,
    m12_diag,
    significance,
    witness_d,
)

C_LO = np.array([1.0, -0.494, 0.494])  # tomography.md inclusive LO


def _ch(name="x", s=100.0, b=0.0, var=9.0):
    return ChannelInput(name, s, b, C_LO, np.eye(3) * var)


def test_lo_values_of_the_observables():
    assert witness_d(C_LO) == pytest.approx(0.663, abs=1e-3)  # tomography.md table
    m12, grad = m12_diag(C_LO)
    assert m12 == pytest.approx(1.244, abs=2e-3)  # tomography.md: 1.245
    assert grad[0] == pytest.approx(2.0) and np.count_nonzero(grad) == 2
    assert np.max(np.abs(grad[1:])) == pytest.approx(0.988)  # C_rr, C_nn tie: either


def test_statistical_significance_scales_as_sqrt_lumi_and_background_dilutes():
    sig = significance([_ch()], lumi=[10.0, 40.0])
    assert sig.z_entanglement[1] / sig.z_entanglement[0] == pytest.approx(2.0, rel=1e-9)
    # sigma_D^2 = var/3 / N for independent diagonal terms: check the absolute value
    assert sig.sigma_d[0] == pytest.approx(np.sqrt(9.0 / 3.0 / 1000.0), rel=1e-9)
    diluted = significance([_ch(b=100.0)], lumi=[10.0])
    assert diluted.z_entanglement[0] == pytest.approx(sig.z_entanglement[0] / np.sqrt(2.0))


def test_combining_two_equal_channels_is_one_channel_with_twice_the_events():
    _, cov2 = combine([_ch("a"), _ch("b")], 10.0)
    _, cov1 = combine([_ch(s=200.0)], 10.0)
    assert np.allclose(cov2, cov1)


def test_systematics_floor_and_lumi_for_5_sigma():
    sig = significance([_ch()], systematics={"tes": [0.0, 0.03, 0.0]})
    assert sig.sigma_d_syst == pytest.approx(0.01)
    # the systematic floor caps Z at (D - 1/3)/0.01
    assert sig.z_entanglement[-1] < (witness_d(C_LO) - 1 / 3) / 0.01
    l5, _ = sig.lumi_for(5.0)
    z, _ = sig.at(l5)
    assert z == pytest.approx(5.0, abs=0.02)
    rows = impact_table([_ch()], {"tes": [0.0, 0.03, 0.0]})
    assert rows[0][0] == "data statistics" and sum(r[2] for r in rows) == pytest.approx(100.0)
