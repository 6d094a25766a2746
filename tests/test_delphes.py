"""The Delphes importer: hand-made Delphes-shaped files with known content, the real fixtures.

The synthetic files are written with uproot, which cannot write split TClonesArray branches:
it writes flat jagged branches, named here in the three layouts the reader accepts
(``Jet/Jet.PT`` as a flat name, ``Jet.PT``, and uproot's default ``Jet_PT``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import uproot
from typer.testing import CliRunner

from ditau.cli.delphes import import_delphes_command
from ditau.detector.delphes import (
    MET_RESOLUTION_K,
    DelphesError,
    import_delphes,
    read_delphes,
)
from ditau.physics import M_PI
from ditau.schema import read_events, read_metadata

M_E = 0.51099895e-3  # PDG 2024 electron mass [GeV]
M_MU = 0.1056583755  # PDG 2024 muon mass [GeV]

_INT = {"Charge", "NCharged", "PID", "Status", "M1", "M2", "D1", "D2"}
_UINT = {"TauTag"}

_LAYOUTS = {
    "slash": {"field_name": lambda c, f: f"{c}/{c}.{f}", "counter_name": lambda c: f"{c}_size"},
    "dot": {"field_name": lambda c, f: f"{c}.{f}", "counter_name": lambda c: f"{c}_size"},
    "underscore": {},  # uproot's defaults: Jet_PT, nJet
}


def _particles(rows: list[tuple]) -> dict[str, list]:
    """One event's Particle list from (PID, Status, M1, D1, D2, Charge, Px, Py, Pz, E) rows."""
    names = ("PID", "Status", "M1", "D1", "D2", "Charge", "Px", "Py", "Pz", "E")
    return {n: [r[i] for r in rows] for i, n in enumerate(names)}


#: Event 0: Z -> tau+ tau- (u from +z), tau+ -> e+ nu nubar, tau- -> pi- pi0 nu (via a copy of
#: the tau- that is more energetic but does not decay), a nu from a B, a pion at eta ~ 8.
#: Event 1: W+ -> tau+ nu (ubar from +z), tau+ -> pi+ nu. Event 2: two decaying tau-, the second
#: more energetic (daughters given as D1 > D2: two separate entries). Event 3: no particles.
PARTICLES = [
    _particles([
        (2212, 4, -1, 2, 2, 1, 0, 0, 6500, 6500),
        (2212, 4, -1, 3, 3, 1, 0, 0, -6500, 6500),
        (2, 21, 0, 4, 4, 0, 0, 0, 60, 60),
        (-2, 21, 1, 4, 4, 0, 0, 0, -40, 40),
        (23, 22, 2, 5, 6, 0, 0, 0, 20, 100),
        (-15, 2, 4, 7, 9, 1, 30, 10, 25, 41),
        (15, 44, 4, 10, 10, -1, -30, -10, -5, 40),
        (-11, 1, 5, -1, -1, 1, 15, 5, 10, 18.75),
        (12, 1, 5, -1, -1, 0, 5, 2, 5, 7.5),
        (-16, 1, 5, -1, -1, 0, 10, 3, 10, 14.5),
        (15, 2, 6, 11, 13, -1, -30, -10, -5, 32.25),
        (-211, 1, 10, -1, -1, -1, -12, -4, -2, 12.75),
        (111, 2, 10, 14, 15, 0, -10, -3, -2, 10.5),
        (16, 1, 10, -1, -1, 0, -8, -3, -1, 8.5),
        (22, 1, 12, -1, -1, 0, -6, -2, -1, 6.5),
        (22, 1, 12, -1, -1, 0, -4, -1, -1, 4.25),
        (14, 1, 17, -1, -1, 0, 3, 4, 0, 5),
        (521, 2, -1, 16, 16, 1, 3, 4, 1, 7),
        (211, 1, -1, -1, -1, 1, 0.5, 0.25, 1000, 1000),
    ]),
    _particles([
        (1, 21, -1, 2, 2, 0, 0, 0, -30, 30),
        (-2, 21, -1, 2, 2, 0, 0, 0, 50, 50),
        (24, 22, 0, 3, 4, 1, 0, 0, 20, 80),
        (-15, 2, 2, 5, 6, 1, 20, 0, 10, 22.5),
        (16, 1, 2, -1, -1, 0, -20, 0, 10, 22.5),
        (211, 1, 3, -1, -1, 1, 15, 0, 8, 17),
        (-16, 1, 3, -1, -1, 0, 5, 0, 2, 5.5),
    ]),
    _particles([
        (15, 2, -1, 2, 4, -1, 0, 40, 0, 50),
        (15, 2, -1, 6, 5, -1, 0, -70, 0, 80),
        (13, 1, 0, -1, -1, -1, 0, 30, 0, 30),
        (-14, 1, 0, -1, -1, 0, 1, 5, 0, 5.25),
        (16, 1, 0, -1, -1, 0, 2, 5, 0, 5.5),
        (-211, 1, 1, -1, -1, -1, 0, -50, 0, 50.25),
        (16, 1, 1, -1, -1, 0, 0, -20, 0, 20),
    ]),
    _particles([]),
]


def _coll(events: list[list[dict[str, float]]], fields: tuple[str, ...]) -> dict[str, list]:
    return {f: [[obj[f] for obj in ev] for ev in events] for f in fields}


#: Reco objects per event (see the module docstring of each test for what is expected).
JET_FIELDS = ("PT", "Eta", "Phi", "Mass", "TauTag", "Charge", "NCharged")
LEP_FIELDS = ("PT", "Eta", "Phi", "Charge")


def _jet(pt, eta, phi, mass=1.0, tag=0, charge=0, ncharged=1):
    return {"PT": pt, "Eta": eta, "Phi": phi, "Mass": mass, "TauTag": tag, "Charge": charge,
            "NCharged": ncharged}


def _lep(pt, eta, phi, charge):
    return {"PT": pt, "Eta": eta, "Phi": phi, "Charge": charge}


def _obj(pt, eta, phi, key="PT"):
    return {key: pt, "Eta": eta, "Phi": phi}


def synthetic(drop: tuple[str, ...] = ()) -> dict[str, dict[str, list]]:
    """Four hand-made events; ``drop`` removes collections."""
    colls = {
        # ev0: e+ and a tau_had (jet axis -0.3, 2.5) + a jet; ev1: two taus (TauTag 3 and 1)
        # and a TauTag-2 (not a tau) jet, a 5 GeV muon; ev2: mu- and a tau-; ev3: one 3-prong.
        "Electron": _coll([[_lep(40, 0.5, 0.0, 1)], [], [], []], LEP_FIELDS),
        "Muon": _coll([[], [_lep(5, 0.0, 0.0, -1)], [_lep(30, -0.5, -1.0, -1)], []], LEP_FIELDS),
        "Jet": _coll([
            [_jet(50, 1.0, -1.5, 5.0, 0, 0, 7), _jet(36, -0.3, 2.5, 1.0, 1, -1, 2)],
            [_jet(45, 0.2, -2.0, 1.0, 3, 1, 1), _jet(30, -1.0, 1.0, 1.0, 1, -1, 1),
             _jet(25, 2.0, -0.5, 4.0, 2, 0, 5)],
            [_jet(30, 0.8, 2.0, 1.0, 1, -1, 1)],
            [_jet(32, 0.0, -2.0, 2.0, 1, 1, 3)],
        ], JET_FIELDS),
        "EFlowTrack": _coll([
            [_obj(20, -0.3, 2.5), _obj(0.5, -0.25, 2.45), _obj(3, -0.3, 2.8),
             _obj(40, 0.5, 0.0), _obj(0.0, 999.9, 0.0)],
            [_obj(40, 0.2, -2.0), _obj(28, -1.0, 1.0)],
            [_obj(27, 0.8, 2.0), _obj(30, -0.5, -1.0)],
            [_obj(10, 0.05, -2.0), _obj(10, -0.05, -2.0), _obj(10, 0.0, -1.9)],
        ], ("PT", "Eta", "Phi")),
        "EFlowPhoton": _coll([
            [_obj(15, -0.25, 2.55, "ET"), _obj(2, 1.0, -1.5, "ET")],
            [_obj(0.5, -1.0, 1.05, "ET")], [], [],
        ], ("ET", "Eta", "Phi")),
        "EFlowNeutralHadron": _coll([[_obj(4, 1.0, -1.5, "ET")], [], [], [_obj(2, 3.0, 0.5, "ET")]],
                                    ("ET", "Eta", "Phi")),
        "MissingET": {"MET": [[20.0], [10.0], [5.0], [15.0]], "Phi": [[1.2], [0.0], [0.0], [-2.0]]},
        "ScalarHT": {"HT": [[126.0], [105.0], [60.0], [40.0]]},
        "Event": {"Weight": [[1.0], [2.0], [1.0], [0.0]]},
        "Particle": {k: [ev[k] for ev in PARTICLES] for k in PARTICLES[0]},
    }
    return {k: v for k, v in colls.items() if k not in drop}


def write_delphes(path: Path, colls: dict[str, dict[str, list]], layout: str = "dot") -> Path:
    """Write collections (name -> field -> per-event lists) as a flat-branch Delphes tree."""
    arrays = {}
    for name, fields in colls.items():
        rec = {}
        for f, lists in fields.items():
            dtype = np.int32 if f in _INT else np.uint32 if f in _UINT else np.float32
            counts = np.array([len(x) for x in lists], dtype=np.int64)
            flat = np.array([v for x in lists for v in x], dtype=dtype)
            rec[f] = ak.unflatten(flat, counts)
        arrays[name] = ak.zip(rec)
    with uproot.recreate(path) as f:
        f.mktree("Delphes", {k: v.type.content for k, v in arrays.items()}, **_LAYOUTS[layout])
        f["Delphes"].extend(arrays)
    return path


def p4(pt: float, eta: float, phi: float, m: float) -> np.ndarray:
    """(px, py, pz, E) from float32-stored pT, eta, phi (as the file holds them)."""
    pt, eta, phi = (float(np.float32(x)) for x in (pt, eta, phi))
    return np.array([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta),
                     np.hypot(pt * np.cosh(eta), m)])


def cols_of(stream: Any) -> dict[str, np.ndarray]:
    t = pa.concat_tables(list(stream))
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}


def leg(c: dict[str, np.ndarray], prefix: str, s: str, i: int) -> np.ndarray:
    return np.array([c[f"{prefix}_{x}_{s}"][i] for x in ("px", "py", "pz", "e")])


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_delphes(tmp_path_factory.mktemp("delphes") / "synth.root", synthetic())


# --------------------------------------------------------------------------------------------
# Hand-made events


@pytest.mark.parametrize("layout", ["slash", "dot", "underscore"])
def test_reco_columns_of_hand_made_events(tmp_path, layout):
    path = write_delphes(tmp_path / f"{layout}.root", synthetic(), layout)
    keys = uproot.open(path)["Delphes"].keys()
    assert {"slash": "Jet/Jet.PT", "dot": "Jet.PT", "underscore": "Jet_PT"}[layout] in keys
    stream = read_delphes(path, step_size=3 if layout == "slash" else 5000)
    c = cols_of(stream)
    assert stream.metadata["inputs"][0]["tau_split"] == "constituents"
    assert c["event_id"].tolist() == [0, 1, 2, 3]

    # ev0: e+ (slot p) and a rho- built from the 20 GeV track + 15 GeV photon in the core cone
    # (the 0.5 GeV track is below 1 GeV, the 3 GeV one at Delta R = 0.3 outside).
    assert c["reco_mode_p"][0] == "e" and c["reco_mode_m"][0] == "rho"
    assert c["reco_charge_p"][0] == 1 and c["reco_charge_m"][0] == -1
    np.testing.assert_allclose(leg(c, "reco_chg", "p", 0), p4(40, 0.5, 0.0, M_E), rtol=1e-9)
    assert np.all(np.isnan(leg(c, "reco_neu", "p", 0)))
    np.testing.assert_allclose(leg(c, "reco_chg", "m", 0), p4(20, -0.3, 2.5, M_PI), rtol=1e-9)
    np.testing.assert_allclose(leg(c, "reco_neu", "m", 0), p4(15, -0.25, 2.55, 0.0), rtol=1e-9)
    assert c["reco_n_neu_m"][0] == 1 and c["reco_origin_m"][0] == 0
    assert c["reco_channel"][0] == "erho" and c["in_sr"][0]
    assert c["n_jets"][0] == 1
    np.testing.assert_allclose([c[f"jet1_{x}"][0] for x in ("px", "py", "pz", "e")],
                               p4(50, 1.0, -1.5, 5.0), rtol=1e-9)
    assert np.isnan(c["jet2_px"][0])
    np.testing.assert_allclose([c["met_x"][0], c["met_y"][0]],
                               [20 * np.cos(np.float32(1.2)), 20 * np.sin(np.float32(1.2))])
    assert c["met_sumet"][0] == 126.0
    assert c["met_cov_xx"][0] == c["met_cov_yy"][0] == pytest.approx(MET_RESOLUTION_K**2 * 126)
    assert c["met_cov_xy"][0] == 0.0
    assert c["trig_etau"][0] and c["trig_single_e"][0]
    assert not (c["trig_ditau"][0] or c["trig_mutau"][0] or c["trig_single_mu"][0])

    # ev1: pi+ pi- (TauTag 3 has bit 0 set; the 0.5 GeV photon is below the 1 GeV neutral
    # threshold); the TauTag-2 jet is a jet; the 5 GeV muon is below the 10 GeV cut.
    assert (c["reco_channel"][1], c["reco_mode_p"][1], c["reco_mode_m"][1]) == ("pipi", "pi",
                                                                                "pi")
    np.testing.assert_allclose(leg(c, "reco_chg", "p", 1), p4(40, 0.2, -2.0, M_PI), rtol=1e-9)
    np.testing.assert_allclose(leg(c, "reco_chg", "m", 1), p4(28, -1.0, 1.0, M_PI), rtol=1e-9)
    assert c["reco_n_neu_m"][1] == 0 and np.isnan(c["reco_neu_e_m"][1])
    assert c["n_jets"][1] == 1 and c["jet1_e"][1] == pytest.approx(p4(25, 2.0, -0.5, 4.0)[3])
    assert c["trig_ditau"][1] and c["in_sr"][1]

    # ev2: same-sign mu- pi-: the slots follow the measured charge (both negative: the lepton,
    # leg A, keeps the minus slot) and the opposite-charge requirement fails.
    assert (c["reco_mode_p"][2], c["reco_mode_m"][2]) == ("pi", "mu")
    assert c["reco_charge_p"][2] == -1 and c["reco_charge_m"][2] == -1
    np.testing.assert_allclose(leg(c, "reco_chg", "m", 2), p4(30, -0.5, -1.0, M_MU), rtol=1e-9)
    assert c["reco_channel"][2] == "mupi" and not c["in_sr"][2]
    assert c["trig_mutau"][2] and c["trig_single_mu"][2]

    # ev3: a lone 3-prong candidate: nothing paired, no jets.
    assert c["reco_channel"][3] == "other" and not c["in_sr"][3]
    assert np.isnan(c["reco_chg_px_p"][3]) and c["n_jets"][3] == 0
    assert not any(c[f"trig_{t}"][3] for t in ("ditau", "etau", "mutau", "single_e"))


def test_truth_columns_from_particle(synth):
    c = cols_of(read_delphes(synth))
    rows = {k: np.array([PARTICLES[0][k][i] for i in range(19)], dtype=float)
            for k in PARTICLES[0]}
    p = np.stack([rows[k] for k in ("Px", "Py", "Pz", "E")], axis=1)
    # ev0: the tau- is the decaying copy (index 10), not the more energetic copy 6.
    np.testing.assert_allclose(leg(c, "tau", "p", 0), p[5])
    np.testing.assert_allclose(leg(c, "tau", "m", 0), p[10])
    np.testing.assert_allclose(leg(c, "nu", "p", 0), p[8] + p[9])
    np.testing.assert_allclose(leg(c, "chg", "p", 0), p[7])
    np.testing.assert_allclose(leg(c, "neu", "p", 0), np.zeros(4))
    np.testing.assert_allclose(leg(c, "chg", "m", 0), p[11])
    np.testing.assert_allclose(leg(c, "neu", "m", 0), p[12])  # the pi0, not its photons
    np.testing.assert_allclose(leg(c, "nu", "m", 0), p[13])
    assert (c["decay_mode_p"][0], c["decay_mode_m"][0], c["truth_channel"][0]) == ("e", "rho",
                                                                                   "erho")
    assert (c["n_nu_p"][0], c["n_charged_p"][0], c["n_neutral_p"][0], c["chg_pdg_p"][0]) == (
        2, 1, 0, -11)
    # the lepton-flavour neutrino of the leptonic leg (tau+ -> e+ nu_e nubar_tau): the nu_e;
    # NaN for the rho leg; no spin weighting known for Delphes input
    np.testing.assert_allclose(leg(c, "nul", "p", 0), p[8])
    assert np.all(np.isnan(leg(c, "nul", "m", 0)))
    np.testing.assert_array_equal(c["spin_weight"], 1.0)
    assert (c["n_nu_m"][0], c["n_pi0_m"][0], c["n_neutral_m"][0], c["chg_pdg_m"][0]) == (
        1, 1, 1, -211)
    pair = p[5] + p[10]
    assert c["m_tautau"][0] == pytest.approx(np.sqrt(pair[3] ** 2 - pair[:3] @ pair[:3]))
    assert c["pt_tautau"][0] == pytest.approx(np.hypot(pair[0], pair[1]))
    assert (c["hard_id1"][0], c["hard_id2"][0], c["quark_pz_sign"][0]) == (2, -2, 1)
    assert c["m_hat"][0] == pytest.approx(np.sqrt(100.0**2 - 20.0**2))
    assert (c["nu_other_px"][0], c["nu_other_py"][0]) == (3.0, 4.0)  # the B's neutrino
    assert (c["vis_out_px"][0], c["vis_out_py"][0]) == (0.5, 0.25)  # the pion at eta ~ 8

    # ev1: tau+ -> pi+ nu only; the W's nu_tau is "other"; the +z parton is the antiquark.
    assert (c["decay_mode_p"][1], c["decay_mode_m"][1], c["truth_channel"][1]) == ("pi", "other",
                                                                                   "other")
    assert np.all(np.isnan(leg(c, "tau", "m", 1))) and np.isnan(c["m_tautau"][1])
    assert (c["n_nu_m"][1], c["n_charged_m"][1], c["chg_pdg_p"][1]) == (0, 0, 211)
    assert (c["hard_id1"][1], c["hard_id2"][1], c["quark_pz_sign"][1]) == (-2, 1, -1)
    assert c["m_hat"][1] == pytest.approx(np.sqrt(80.0**2 - 20.0**2))
    assert (c["nu_other_px"][1], c["nu_other_py"][1]) == (-20.0, 0.0)

    # ev2: two decaying tau-: the more energetic one (pi- nu, daughters as D1 > D2) is the leg;
    # the other one's neutrinos count as "other"; no incoming partons: ids 0, m_hat 0.
    assert c["tau_e_m"][2] == 80.0 and c["decay_mode_m"][2] == "pi"
    assert c["chg_py_m"][2] == -50.0 and c["nu_py_m"][2] == -20.0
    assert (c["nu_other_px"][2], c["nu_other_py"][2]) == (3.0, 10.0)
    assert (c["hard_id1"][2], c["m_hat"][2], c["quark_pz_sign"][2]) == (0, 0.0, 0)

    # ev3: empty record.
    assert c["truth_channel"][3] == "other" and np.isnan(c["tau_px_p"][3])
    assert c["n_nu_p"][3] == 0 and c["nu_other_px"][3] == 0.0


def test_weights_follow_cross_section_and_gen_weight(synth):
    c = cols_of(read_delphes(synth, cross_section_pb=2.0, sample="ztt"))
    np.testing.assert_array_equal(c["gen_weight"], [1.0, 2.0, 1.0, 0.0])
    # sigma [fb] x gen_weight / sum(gen_weight): 2000 fb x w / 4
    np.testing.assert_allclose(c["weight"], [500.0, 1000.0, 500.0, 0.0])
    assert set(c["sample"]) == {"ztt"}
    stream = read_delphes(synth)
    assert stream.metadata["normalisation"] == "unnormalised"
    np.testing.assert_array_equal(cols_of(stream)["weight"], np.ones(4))


def test_event_ids_run_over_files_and_chunking_does_not_matter(synth, tmp_path):
    other = write_delphes(tmp_path / "b.root", synthetic(), "slash")
    one = cols_of(read_delphes([synth, other], step_size=1000, cross_section_pb=1.0))
    chunks = list(read_delphes([synth, other], step_size=3, cross_section_pb=1.0))
    assert [t.num_rows for t in chunks] == [3, 1, 3, 1]
    many = cols_of(chunks)
    assert one["event_id"].tolist() == list(range(8))
    np.testing.assert_allclose(one["weight"], 1000.0 * np.tile([1, 2, 1, 0], 2) / 8)
    assert_same_columns(one, many)


def assert_same_columns(a: dict, b: dict) -> None:
    """Every column of ``a`` equal to ``b``'s (floats exactly, NaN == NaN)."""
    for k, v in a.items():
        if v.dtype.kind == "f":
            np.testing.assert_array_equal(v, b[k], err_msg=k)
        else:
            assert v.tolist() == b[k].tolist(), k


def test_missing_leptons_error_names_them_unless_allowed(tmp_path):
    path = write_delphes(tmp_path / "nolep.root", synthetic(drop=("Electron", "Muon")))
    with pytest.raises(DelphesError, match="Electron, Muon") as err:
        read_delphes(path)
    assert str(path) in str(err.value) and "allow_missing" in str(err.value)
    stream = read_delphes(path, allow_missing=("Electron", "Muon"))
    c = cols_of(stream)
    assert stream.metadata["inputs"][0]["missing_allowed"] == ["Electron", "Muon"]
    # Without leptons ev0 and ev2 have one tau each: unpaired; ev1 stays pipi.
    assert c["reco_channel"].tolist() == ["other", "pipi", "other", "other"]
    with pytest.raises(DelphesError, match="Jet"):
        read_delphes(path, allow_missing=("Jet",))


def test_all_missing_collections_named_together(tmp_path):
    path = write_delphes(tmp_path / "bare.root", synthetic(
        drop=("Jet", "Electron", "MissingET", "EFlowNeutralHadron")))
    with pytest.raises(DelphesError) as err:
        read_delphes(path)
    msg = str(err.value)
    assert str(path) in msg
    for name in ("Jet", "Electron", "MissingET", "EFlowNeutralHadron"):
        assert name in msg, name
    assert "Muon," not in msg  # Muon is present


def test_collection_without_a_needed_branch_is_named(tmp_path):
    colls = synthetic(drop=("Muon",))
    del colls["Jet"]["TauTag"]
    path = write_delphes(tmp_path / "notag.root", colls)
    with pytest.raises(DelphesError) as err:
        read_delphes(path, allow_missing=("Muon",))
    msg = str(err.value)
    assert "Jet without Jet.TauTag" in msg and "collection(s) Jet" not in msg
    assert "Muon" not in msg  # allowed to be missing


def test_jet_fallback_without_constituents(tmp_path):
    path = write_delphes(tmp_path / "noflow.root",
                         synthetic(drop=("EFlowTrack", "EFlowPhoton", "EFlowNeutralHadron")))
    stream = read_delphes(path)
    c = cols_of(stream)
    assert stream.metadata["inputs"][0]["tau_split"] == "jet"
    # The tau leg is the whole jet with n_tracks = Jet.NCharged and no neutral part: ev0's
    # tau jet has NCharged = 2 (not a 1- or 3-prong), so the electron stays unpaired.
    assert c["reco_channel"][0] == "other"
    np.testing.assert_allclose(leg(c, "reco_chg", "p", 1), p4(45, 0.2, -2.0, 1.0), rtol=1e-9)
    assert c["reco_channel"][1] == "pipi" and c["reco_n_neu_p"][1] == 0
    assert c["reco_channel"][2] == "mupi"


def test_met_and_sumet_fallbacks(tmp_path):
    path = write_delphes(tmp_path / "nomet.root", synthetic(drop=("MissingET", "ScalarHT")))
    stream = read_delphes(path)
    c = cols_of(stream)
    info = stream.metadata["inputs"][0]
    assert (info["met"], info["sumet"]) == ("eflow", "object_pt_sum")
    colls = synthetic()
    for i in range(4):
        mx = my = 0.0
        for name, key in (("EFlowTrack", "PT"), ("EFlowPhoton", "ET"),
                          ("EFlowNeutralHadron", "ET")):
            pt = np.array(colls[name][key][i], dtype=np.float32).astype(float)
            phi = np.array(colls[name]["Phi"][i], dtype=np.float32).astype(float)
            mx -= np.sum(pt * np.cos(phi))
            my -= np.sum(pt * np.sin(phi))
        assert (c["met_x"][i], c["met_y"][i]) == (pytest.approx(mx), pytest.approx(my))
    # sum E_T = scalar pT sum of all jets and leptons (ev0: 50 + 36 + 40; ev2: 30 + 30)
    np.testing.assert_allclose(c["met_sumet"], [126.0, 105.0, 60.0, 32.0], rtol=1e-6)
    np.testing.assert_allclose(c["met_cov_xx"], MET_RESOLUTION_K**2 * c["met_sumet"])


def test_import_writes_a_valid_file_atomically(synth, tmp_path):
    out = tmp_path / "delphes.parquet"
    summary = import_delphes([synth], out, sample="ztt", cross_section_pb=2.0)
    t = read_events(out, require=("id", "truth", "reco"))
    assert t.num_rows == summary.events == 4 and summary.in_sr == 2
    assert summary.channels == {"erho": 1, "mupi": 1, "other": 1, "pipi": 1}
    meta = read_metadata(out)
    assert meta["stage"] == "import-delphes" and meta["n_events"] == 4
    assert meta["inputs"][0]["file"] == str(synth)
    assert meta["cross_section_pb"] == 2.0 and meta["truth"] == "Particle"
    # a bad second input: nothing is written
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not a root file")
    out2 = tmp_path / "x.parquet"
    with pytest.raises(DelphesError, match=r"bad\.root"):
        import_delphes([synth, bad], out2)
    assert not out2.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.root", "delphes.parquet"]


def test_corrupt_data_mid_stream_is_a_clear_error_and_leaves_no_file(synth, tmp_path):
    data = bytearray(synth.read_bytes())
    seek = int(uproot.open(synth)["Delphes"]["Jet.PT"].member("fBasketSeek")[0])
    data[seek:seek + 30] = b"\xff" * 30  # destroy the first Jet.PT basket's header
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(bytes(data))
    out = tmp_path / "x.parquet"
    with pytest.raises(DelphesError, match="cannot read entries") as err:
        import_delphes([synth, bad], out)  # the first file is written before the error
    assert str(bad) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.root"]


def test_truth_omitted_when_one_input_lacks_particle(synth, tmp_path):
    other = write_delphes(tmp_path / "noparticle.root", synthetic(drop=("Particle",)))
    stream = read_delphes([synth, other])
    assert stream.groups == ("id", "reco")
    assert "noparticle.root" in stream.metadata["truth"]
    assert "tau_px_p" not in pa.concat_tables(list(stream)).column_names


def test_bad_arguments(synth, tmp_path):
    with pytest.raises(DelphesError, match="no such file"):
        read_delphes(tmp_path / "nothere.root")
    with pytest.raises(DelphesError, match="cross_section_pb"):
        read_delphes(synth, cross_section_pb=-1.0)
    with pytest.raises(DelphesError, match="no input files"):
        read_delphes([])


# --------------------------------------------------------------------------------------------
# Real Delphes files (../shared/fixtures)


def _fixture(name: str) -> Path:
    for base in (Path(__file__).parents[2] / "shared" / "fixtures", Path("/work/shared/fixtures")):
        if (base / name).is_file():
            return base / name
    pytest.skip(f"fixture {name} not available")


def test_real_file_without_leptons_fails_clearly():
    path = _fixture("delphes_issue513.root")
    with pytest.raises(DelphesError) as err:
        read_delphes(path)
    msg = str(err.value)
    assert str(path) in msg and "Electron" in msg and "Muon" in msg
    assert "MissingET" not in msg  # the EFlow fallback is possible there


def test_real_file_imports_with_eflow_met(tmp_path):
    path = _fixture("delphes_issue513.root")
    out = tmp_path / "real.parquet"
    summary = import_delphes(path, out, allow_missing=("Electron", "Muon"), step_size=5)
    t = read_events(out, require=("id", "truth", "reco"))
    assert t.num_rows == 10
    info = summary.metadata["inputs"][0]
    assert (info["met"], info["tau_split"], info["missing_allowed"]) == (
        "eflow", "constituents", ["Electron", "Muon"])
    tree = uproot.open(path)["Delphes"]
    mx = np.zeros(10)
    for name, key in (("EFlowTrack", "PT"), ("EFlowPhoton", "ET"), ("EFlowNeutralHadron", "ET")):
        arr = tree.arrays([f"{name}.{key}", f"{name}.Phi"])
        mx -= ak.to_numpy(ak.sum(arr[f"{name}.{key}"] * np.cos(arr[f"{name}.Phi"]), axis=1))
    np.testing.assert_allclose(t["met_x"].to_numpy(), mx, rtol=1e-5)
    # Hard process from Particle status 21 agrees with the generator's Event.ID1/ID2.
    ev = tree.arrays(["Event.ID1", "Event.ID2"])
    assert t["hard_id1"].to_pylist() == ak.to_list(ak.firsts(ev["Event.ID1"]))
    assert t["hard_id2"].to_pylist() == ak.to_list(ak.firsts(ev["Event.ID2"]))
    # ttbar: taus from W decays in events 4 (tau+ -> mu), 7 (tau- -> e) and 9 (tau- -> rho).
    modes = list(zip(t["decay_mode_p"].to_pylist(), t["decay_mode_m"].to_pylist(), strict=True))
    assert modes[4][0] == "mu" and modes[7][1] == "e" and modes[9][1] == "rho"
    assert all(m == ("other", "other") for i, m in enumerate(modes) if i not in (4, 7, 9))
    assert set(t["truth_channel"].to_pylist()) == {"other"}
    assert t["n_jets"].to_numpy().max() > 0  # no tau tags in this file: all jets are jets
    assert set(t["reco_channel"].to_pylist()) == {"other"}
    assert json.loads(pq.ParquetFile(out).metadata.metadata[b"ditau"])["stage"] == (
        "import-delphes")


def test_bad_fixture_fails_with_the_file_named():
    path = _fixture("delphes_bad.root")
    with pytest.raises(DelphesError, match="no 'Delphes' tree") as err:
        read_delphes(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------------
# Command line


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("import-delphes")(import_delphes_command)
    app.command("noop")(lambda: None)  # two commands: the subcommand name is then required
    return app


def test_cli_imports_and_reports(synth, tmp_path):
    out = tmp_path / "cli.parquet"
    res = CliRunner().invoke(_app(), ["import-delphes", str(synth), "--out", str(out), "-q",
                                      "--sample", "ztt", "--cross-section-pb", "2"])
    assert res.exit_code == 0, res.output
    assert "wrote 4 events" in res.output and "2 in the signal region" in res.output
    assert read_events(out)["weight"].to_pylist() == [500.0, 1000.0, 500.0, 0.0]


def test_cli_error_exits_2(tmp_path):
    path = write_delphes(tmp_path / "nolep.root", synthetic(drop=("Electron", "Muon")))
    out = tmp_path / "cli.parquet"
    res = CliRunner().invoke(_app(), ["import-delphes", str(path), "-o", str(out), "-q"])
    assert res.exit_code == 2
    assert "error:" in res.output and "Electron, Muon" in res.output
    assert not out.exists()
    res = CliRunner().invoke(_app(), ["import-delphes", str(path), "-o", str(out), "-q",
                                      "--allow-missing", "Electron,Muon"])
    assert res.exit_code == 0, res.output
    assert read_metadata(out)["inputs"][0]["missing_allowed"] == ["Electron", "Muon"]
