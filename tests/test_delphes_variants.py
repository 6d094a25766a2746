"""The Delphes importer on the variants users meet (issue #13): flattened per-event branches,
``Particle`` written from a filtered list, collections under other names.

The field fixtures are ``/work/shared/fixtures/field/*.root`` (README there); the synthetic
files reuse the hand-made events of ``test_delphes``.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pytest
import uproot
from typer.testing import CliRunner

from ditau.detector import delphes
from ditau.detector.delphes import (
    MET_RESOLUTION_K,
    DelphesError,
    DelphesWarning,
    import_delphes,
    read_delphes,
)
from ditau.schema import read_events, read_metadata
from test_delphes import (
    PARTICLES,
    _app,
    _particles,
    assert_same_columns,
    cols_of,
    leg,
    p4,
    synthetic,
    write_delphes,
)

_INT = {"Charge", "NCharged", "PID", "Status", "M1", "M2", "D1", "D2", "fUniqueID"}


def _field(name: str) -> Path:
    for base in (Path(__file__).parents[2] / "shared" / "fixtures" / "field",
                 Path("/work/shared/fixtures/field")):
        if (base / name).is_file():
            return base / name
    pytest.skip(f"fixture field/{name} not available")


def _real(name: str) -> Path:
    for base in (Path(__file__).parents[2] / "shared" / "fixtures", Path("/work/shared/fixtures")):
        if (base / name).is_file():
            return base / name
    pytest.skip(f"fixture {name} not available")


def write_tree(path: Path, colls: dict[str, dict[str, list]],
               scalars: dict[str, np.ndarray] | None = None) -> Path:
    """Like ``test_delphes.write_delphes`` (``Coll.Field`` names), with int fUniqueID and flat
    per-event branches ``scalars`` (name -> one value per event)."""
    arrays: dict[str, ak.Array | np.ndarray] = {}
    for name, fields in colls.items():
        rec = {}
        for f, lists in fields.items():
            dtype = np.int32 if f in _INT else np.uint32 if f == "TauTag" else np.float32
            counts = np.array([len(x) for x in lists], dtype=np.int64)
            rec[f] = ak.unflatten(np.array([v for x in lists for v in x], dtype=dtype), counts)
        arrays[name] = ak.zip(rec)
    arrays.update(scalars or {})
    types = {k: v.type.content if isinstance(v, ak.Array) else np.dtype((v.dtype, v.shape[1:]))
             for k, v in arrays.items()}
    with uproot.recreate(path) as f:
        f.mktree("Delphes", types, field_name=lambda c, fl: f"{c}.{fl}",
                 counter_name=lambda c: f"{c}_size")
        f["Delphes"].extend(arrays)
    return path


def _file_content(path: Path) -> dict[str, dict[str, list]]:
    """A flat-branch Delphes file's jagged collections as name -> field -> per-event lists."""
    tree = uproot.open(path)["Delphes"]
    out: dict[str, dict[str, list]] = {}
    for key in tree.keys():
        if "." in key:
            coll, fld = key.split(".", 1)
            out.setdefault(coll, {})[fld] = tree[key].array(library="ak").tolist()
    return out


# --------------------------------------------------------------------------------------------
# 1. Flattened per-event branches


def test_flattened_met_fixture_imports_with_the_values_in_the_file(tmp_path):
    path = _field("delphes_scalar_met.root")
    tree = uproot.open(path)["Delphes"]
    assert not isinstance(tree["MissingET.MET"].interpretation, uproot.AsJagged)
    met = float(tree["MissingET.MET"].array(library="np")[0])
    phi = float(tree["MissingET.Phi"].array(library="np")[0])
    ht = float(tree["ScalarHT.HT"].array(library="np")[0])
    assert (met, ht) == (20.0, 75.0)
    out = tmp_path / "scalar.parquet"
    summary = import_delphes(path, out)
    t = read_events(out, require=("id", "reco"))
    assert t["met_x"].to_pylist() == [pytest.approx(met * np.cos(phi), rel=1e-12)]
    assert t["met_y"].to_pylist() == [pytest.approx(met * np.sin(phi), rel=1e-12)]
    assert t["met_sumet"].to_pylist() == [75.0]
    assert t["met_cov_xx"].to_pylist() == [pytest.approx(MET_RESOLUTION_K**2 * 75.0)]
    info = summary.metadata["inputs"][0]
    assert info["per_event_branches"] == ["MissingET.MET", "MissingET.Phi", "ScalarHT.HT"]
    assert (info["met"], info["sumet"]) == ("MissingET", "ScalarHT")
    # the two tau-tagged jets (40 GeV, charge -1; 35 GeV, charge +1) make a pi pi pair
    c = {k: t[k].to_numpy(zero_copy_only=False) for k in t.column_names}
    assert c["reco_channel"][0] == "pipi"
    np.testing.assert_allclose(leg(c, "reco_chg", "m", 0), p4(40, 0.1, 0.5, 1.0), rtol=1e-6)
    np.testing.assert_allclose(leg(c, "reco_chg", "p", 0), p4(35, -0.4, -2.6, 1.0), rtol=1e-6)


def _flattened_synthetic(path: Path) -> Path:
    colls = synthetic()
    scalars = {f"{coll}.{fld}": np.array([v[0] for v in colls[coll][fld]], dtype=np.float32)
               for coll, fld in (("MissingET", "MET"), ("MissingET", "Phi"), ("ScalarHT", "HT"),
                                 ("Event", "Weight"))}
    for coll in ("MissingET", "ScalarHT", "Event"):
        del colls[coll]
    return write_tree(path, colls, scalars)


def test_flattened_synthetic_file_gives_the_same_events_as_the_delphes_layout(tmp_path):
    flat = _flattened_synthetic(tmp_path / "flat.root")
    ref = write_delphes(tmp_path / "ref.root", synthetic())
    a = cols_of(read_delphes(flat, cross_section_pb=2.0, step_size=3))
    b = cols_of(read_delphes(ref, cross_section_pb=2.0))
    phi0, phi3 = float(np.float32(1.2)), float(np.float32(-2.0))
    np.testing.assert_allclose(a["met_x"], [20 * np.cos(phi0), 10.0, 5.0, 15 * np.cos(phi3)],
                               rtol=1e-12)
    np.testing.assert_array_equal(a["met_sumet"], [126.0, 105.0, 60.0, 40.0])
    # Event.Weight per event (1, 2, 1, 0): sigma x 1000 x w / 4
    np.testing.assert_allclose(a["weight"], [500.0, 1000.0, 500.0, 0.0])
    assert a.keys() == b.keys()
    assert_same_columns(a, b)


def test_object_branch_stored_per_event_is_named_with_its_file(tmp_path):
    colls = synthetic(drop=("Muon",))
    pts = np.array([ev[0] if ev else 0.0 for ev in colls["Electron"]["PT"]], dtype=np.float32)
    del colls["Electron"]["PT"]
    path = write_tree(tmp_path / "flatele.root", colls, {"Electron.PT": pts})
    with pytest.raises(DelphesError) as err:
        read_delphes(path, allow_missing=("Muon",))
    msg = str(err.value)
    assert str(path) in msg and "branch 'Electron.PT'" in msg
    assert "one number per event" in msg and "a list per event" in msg
    # a fixed-size array per event where one number is expected
    colls = synthetic()
    del colls["MissingET"]
    path = write_tree(tmp_path / "arr.root", colls, {
        "MissingET.MET": np.ones((4, 2), np.float32), "MissingET.Phi": np.zeros(4, np.float32)})
    with pytest.raises(DelphesError, match=r"'MissingET\.MET' .* shape \(2,\)") as err:
        read_delphes(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------------
# 2. Particle written from a filtered list


def test_filtered_particle_fixture_drops_the_truth_with_the_reason():
    path = _field("delphes_filtered_particles.root")
    # The fixture's indices point into the unfiltered list (two beam protons dropped): the
    # tau- at index 2 has D1, D2 = 7, 8 in a list of 7; there is no fUniqueID to map them.
    tree = uproot.open(path)["Delphes"]
    assert tree["Particle.D1"].array().tolist() == [[3, 5, 7, -1, -1, -1, -1]]
    assert not any("fUniqueID" in k for k in tree.keys())
    with pytest.warns(DelphesWarning, match="filtered") as rec:
        stream = read_delphes(path)
    msg = str(rec[0].message)
    assert str(path) in msg and "D1 = 7" in msg and "no Particle.fUniqueID" in msg
    assert stream.groups == ("id", "reco")
    assert stream.metadata["truth"].startswith("omitted: ") and str(path) in (
        stream.metadata["truth"])
    info = stream.metadata["inputs"][0]
    assert info["particle_truth"] is False and info["particle_links"] is None
    t = pa.concat_tables(list(stream))
    assert "tau_px_p" not in t.column_names and t["reco_channel"].to_pylist() == ["pipi"]


def test_filtered_particle_fixture_with_funiqueid_gives_the_right_truth(tmp_path):
    """The fixture plus the fUniqueID Delphes writes (1 + index in the unfiltered list: the
    protons were 1 and 2, so 3..9): tau+ -> pi+ nubar, tau- -> pi- nu."""
    colls = _file_content(_field("delphes_filtered_particles.root"))
    colls["Particle"]["fUniqueID"] = [[3, 4, 5, 6, 7, 8, 9]]
    path = write_tree(tmp_path / "uid.root", colls)
    stream = read_delphes(path)
    assert stream.metadata["inputs"][0]["particle_links"] == "fUniqueID"
    assert stream.groups == ("id", "truth", "reco")
    c = cols_of(stream)
    par = colls["Particle"]
    p = np.stack([np.array(par[k][0], dtype=np.float32).astype(float)
                  for k in ("Px", "Py", "Pz", "E")], axis=1)
    np.testing.assert_array_equal(leg(c, "tau", "p", 0), p[1])
    np.testing.assert_array_equal(leg(c, "tau", "m", 0), p[2])
    np.testing.assert_array_equal(leg(c, "chg", "p", 0), p[3])  # pi+
    np.testing.assert_array_equal(leg(c, "nu", "p", 0), p[4])  # nubar_tau
    np.testing.assert_array_equal(leg(c, "chg", "m", 0), p[5])  # pi-
    np.testing.assert_array_equal(leg(c, "nu", "m", 0), p[6])  # nu_tau
    assert (c["chg_pdg_p"][0], c["chg_pdg_m"][0]) == (211, -211)
    assert (c["decay_mode_p"][0], c["decay_mode_m"][0], c["truth_channel"][0]) == (
        "pi", "pi", "pipi")
    pair = p[1] + p[2]
    m = np.sqrt(pair[3] ** 2 - pair[:3] @ pair[:3])
    assert np.isfinite(c["m_tautau"][0]) and c["m_tautau"][0] == pytest.approx(m, rel=1e-12)
    assert (c["nu_other_px"][0], c["nu_other_py"][0]) == (0.0, 0.0)


def _drop(event: dict[str, list], drop: set[int]) -> dict[str, list]:
    """The event's Particle list without the entries ``drop``, indices unchanged (as Delphes'
    TreeWriter copies them), with fUniqueID = 1 + the original index."""
    keep = [i for i in range(len(event["PID"])) if i not in drop]
    out = {k: [v[i] for i in keep] for k, v in event.items()}
    out["fUniqueID"] = [i + 1 for i in keep]
    return out


def test_funiqueid_repair_reproduces_the_unfiltered_truth(tmp_path):
    """Synthetic events 0-2 of test_delphes with entries dropped before and between the taus'
    records (protons; a photon of the pi0; the B meson, so its neutrino loses its mother):
    every truth column equals the one of the unfiltered file."""
    drops = [{0, 1, 14, 17}, {1}, set(), set()]
    filtered = synthetic()
    parts = [_drop(ev, d) for ev, d in zip(PARTICLES, drops, strict=True)]
    filtered["Particle"] = {k: [ev[k] for ev in parts] for k in parts[0]}
    path = write_tree(tmp_path / "filtered.root", filtered)
    stream = read_delphes(path, step_size=2)
    assert stream.metadata["inputs"][0]["particle_links"] == "fUniqueID"
    got = cols_of(stream)
    ref = cols_of(read_delphes(write_delphes(tmp_path / "ref.root", synthetic())))
    changed = {"m_hat", "hard_id1"}  # ev1 lost its +z parton (the ubar) ...
    for k in ref:
        if k in changed:
            continue
        if ref[k].dtype.kind == "f":
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
        else:
            assert got[k].tolist() == ref[k].tolist(), k
    assert got["hard_id1"].tolist() == [2, 0, 0, 0] and got["m_hat"][1] == 0.0
    # ... and ev0 the photon at index 14: the tau- legs still hold the pi0 itself
    np.testing.assert_array_equal(leg(got, "neu", "m", 0), [-10, -3, -2, 10.5])


def test_filtered_list_that_lost_a_tau_decay_product_drops_the_truth(tmp_path):
    colls = synthetic()
    parts = [_drop(PARTICLES[0], {0, 1, 9})] + [_drop(ev, set()) for ev in PARTICLES[1:]]
    colls["Particle"] = {k: [ev[k] for ev in parts] for k in parts[0]}
    path = write_tree(tmp_path / "lost.root", colls)
    with pytest.warns(DelphesWarning, match="decay product of this tau") as rec:
        stream = read_delphes(path)
    assert "fUniqueID does not repair them" in str(rec[0].message)
    assert stream.groups == ("id", "reco")


def test_stored_indices_checked_in_every_chunk(tmp_path, monkeypatch):
    """Indices consistent in the checked first entries but not later: a clear error naming
    the file and the entries, not wrong truth."""
    broken = _particles([(23, 22, -1, 1, 2, 0, 0, 0, 0, 91), (15, 2, 0, 5, 6, -1, 0, 0, 1, 45),
                         (-15, 2, 0, 3, 4, 1, 0, 0, -1, 45), (211, 1, 2, -1, -1, 1, 0, 0, -1, 30),
                         (-16, 1, 2, -1, -1, 0, 0, 0, 0, 15)])
    colls = synthetic()
    colls["Particle"] = {k: [PARTICLES[0][k], broken[k], PARTICLES[2][k], []] for k in broken}
    path = write_delphes(tmp_path / "late.root", colls)
    monkeypatch.setattr(delphes, "PARTICLE_CHECK_ENTRIES", 1)
    stream = read_delphes(path, step_size=1)
    assert stream.metadata["inputs"][0]["particle_links"] == "stored"
    next(stream)
    with pytest.raises(DelphesError, match=r"entries 1-1: Particle mother/daughter") as err:
        next(stream)
    assert str(path) in str(err.value)
    assert "entry 1, index 1 (PID 15): D1 = 5 is outside" in str(err.value)
    monkeypatch.setattr(delphes, "PARTICLE_CHECK_ENTRIES", 100)
    with pytest.warns(DelphesWarning, match=r"entry 1, index 1 \(PID 15\): D1 = 5"):
        assert read_delphes(path).groups == ("id", "reco")


def test_real_file_keeps_its_stored_links():
    path = _real("delphes_issue513.root")
    stream = read_delphes(path, allow_missing=("electrons", "muons"))
    info = stream.metadata["inputs"][0]
    assert (info["particle_truth"], info["particle_links"]) == (True, "stored")
    assert info["missing_allowed"] == ["Electron", "Muon"]


# --------------------------------------------------------------------------------------------
# 3. Collections under other names


def test_ktjet_fixture_error_proposes_the_mapping():
    path = _field("delphes_ktjet.root")
    with pytest.raises(DelphesError) as err:
        read_delphes(path)
    msg = str(err.value)
    assert str(path) in msg and "missing Delphes collection(s) Jet" in msg
    assert "collections={'jets': 'KTjet'}" in msg and "--collection" not in msg
    assert err.value.render("cli").endswith("(pass --collection jets=KTjet to read them from "
                                            "there)")


@pytest.mark.parametrize("mapping", [{"jets": "KTjet"}, {"Jet": "KTjet"}])
def test_ktjet_fixture_imports_with_the_mapping(tmp_path, mapping):
    path = _field("delphes_ktjet.root")
    out = tmp_path / "kt.parquet"
    summary = import_delphes(path, out, collections=mapping)
    assert summary.events == 1 and summary.channels == {"pipi": 1}
    info = summary.metadata["inputs"][0]
    assert info["collections"]["jets"] == "KTjet" and info["tau_split"] == "jet"
    t = read_events(out)
    c = {k: t[k].to_numpy(zero_copy_only=False) for k in t.column_names}
    # KTjet: (40, 0.1, 0.5, m 1, charge -1) and (35, -0.4, -2.6, m 1, charge +1), both tagged
    np.testing.assert_allclose(leg(c, "reco_chg", "m", 0), p4(40, 0.1, 0.5, 1.0), rtol=1e-12)
    np.testing.assert_allclose(leg(c, "reco_chg", "p", 0), p4(35, -0.4, -2.6, 1.0), rtol=1e-12)
    assert (c["reco_mode_p"][0], c["reco_mode_m"][0], c["n_jets"][0]) == ("pi", "pi", 0)
    assert c["met_sumet"][0] == 75.0


def test_renamed_lepton_collections(tmp_path):
    colls = synthetic()
    colls["ElectronLoose"] = colls.pop("Electron")
    path = write_delphes(tmp_path / "loose.root", colls)
    with pytest.raises(DelphesError, match=r"collection\(s\) Electron \(pass allow_missing"):
        read_delphes(path)
    got = cols_of(read_delphes(path, collections={"electrons": "ElectronLoose"}))
    ref = cols_of(read_delphes(write_delphes(tmp_path / "ref.root", synthetic())))
    assert got["reco_channel"].tolist() == ref["reco_channel"].tolist() == [
        "erho", "pipi", "mupi", "other"]
    np.testing.assert_array_equal(got["reco_chg_px_p"], ref["reco_chg_px_p"])
    # a mapped name that is not there is named with its role
    with pytest.raises(DelphesError, match=r"Muon2 \(the muons\)"):
        read_delphes(path, collections={"electrons": "ElectronLoose", "muons": "Muon2"})
    with pytest.raises(DelphesError, match="unknown key 'jet'"):
        read_delphes(path, collections={"jet": "Jet"})
    with pytest.raises(DelphesError, match="not a collection name"):
        read_delphes(path, collections={"jets": "Jet/Jet.PT"})


def test_cli_collection_option_and_cli_hints(tmp_path):
    kt = _field("delphes_ktjet.root")
    out = tmp_path / "kt.parquet"
    res = CliRunner().invoke(_app(), ["import-delphes", str(kt), "-o", str(out), "-q"])
    assert res.exit_code == 2 and "--collection jets=KTjet" in res.output
    assert "collections=" not in res.output and str(kt) in res.output
    res = CliRunner().invoke(_app(), ["import-delphes", str(kt), "-o", str(out), "-q",
                                      "--collection", "jets=KTjet"])
    assert res.exit_code == 0, res.output
    assert "reco channels: {'pipi': 1}" in res.output
    assert read_events(out)["reco_chg_e_m"].to_pylist() == [pytest.approx(
        p4(40, 0.1, 0.5, 1.0)[3], rel=1e-12)]
    assert read_metadata(out)["inputs"][0]["collections"]["jets"] == "KTjet"
    res = CliRunner().invoke(_app(), ["import-delphes", str(kt), "-o", str(out), "-q",
                                      "--collection", "jet=KTjet"])
    assert res.exit_code == 2 and "unknown role(s) jet" in res.output
    # the allow-missing hint in CLI syntax
    nolep = write_delphes(tmp_path / "nolep.root", synthetic(drop=("Electron", "Muon")))
    res = CliRunner().invoke(_app(), ["import-delphes", str(nolep), "-o", str(out), "-q"])
    assert res.exit_code == 2
    assert "--allow-missing Electron,Muon" in res.output and "allow_missing=" not in res.output


def test_cli_warns_when_the_truth_is_omitted(tmp_path):
    path = _field("delphes_filtered_particles.root")
    out = tmp_path / "f.parquet"
    res = CliRunner().invoke(_app(), ["import-delphes", str(path), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "no Particle.fUniqueID" in res.output
    assert "truth: omitted" in res.output
    assert read_metadata(out)["truth"].startswith("omitted: ")
