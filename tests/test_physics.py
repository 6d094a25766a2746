import numpy as np
import pytest

from ditau.physics import (
    BR_PDG,
    CHANNELS,
    KAPPA,
    M_TAU,
    channel_of,
    expected_channel_fractions,
    p4_from_columns,
)


def test_tau_mass_is_pdg_value_in_gev():
    assert M_TAU == pytest.approx(1.77693, abs=1e-5)


def test_rho_analysing_power_formula():
    # (m_tau^2 - 2 m_rho^2)/(m_tau^2 + 2 m_rho^2) with m_rho = 0.77526 GeV
    assert KAPPA["rho"] == pytest.approx(0.4487, abs=1e-3)


@pytest.mark.parametrize(("a", "b", "name"), [
    ("pi", "pi", "pipi"), ("rho", "pi", "pirho"), ("pi", "rho", "pirho"),
    ("rho", "rho", "rhorho"), ("pi", "e", "epi"), ("mu", "pi", "mupi"),
    ("rho", "e", "erho"), ("mu", "rho", "murho"), ("e", "mu", "other"), ("e", "e", "other"),
    ("other", "pi", "other"),
])
def test_channel_of_is_order_independent(a, b, name):
    assert channel_of([a], [b])[0] == name


def test_expected_channel_fractions_hand_values():
    f = expected_channel_fractions(BR_PDG)
    assert set(f) == set(CHANNELS)
    assert f["pipi"] == pytest.approx(0.1082**2)
    assert f["erho"] == pytest.approx(2 * 0.1782 * 0.2549)
    assert sum(f.values()) == pytest.approx(1.0)
    # the seven channels make up 39 % of all tau pairs (hand sum of the PDG products)
    assert sum(v for k, v in f.items() if k != "other") == pytest.approx(0.3875, abs=1e-4)


def test_p4_from_columns_mass():
    cols = {"x_px_p": np.array([3.0]), "x_py_p": np.array([0.0]), "x_pz_p": np.array([4.0]),
            "x_e_p": np.array([13.0])}
    assert p4_from_columns(cols, "x", "_p").mass[0] == pytest.approx(12.0)
