"""The ML method's input columns come from the model file's configuration alone
(:func:`ditau.ml.io.read_model_config`): ``columns_for`` / ``model_columns`` build no network
and load no weights, name the impact-parameter columns exactly for a model trained with them,
and give the model-file errors of :func:`~ditau.ml.io.load_model`."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from ditau.ml.features import IP_COLUMNS, compute_stats, extract  # noqa: E402
from ditau.ml.infer import EXTRA_COLUMNS, model_columns  # noqa: E402
from ditau.ml.io import (  # noqa: E402
    ModelFileError,
    load_model,
    read_blob,
    read_model_config,
    save_model,
    write_blob,
)
from ditau.ml.model import ModelConfig, NeutrinoModel  # noqa: E402
from ditau.ml.synthetic import write_synthetic  # noqa: E402
from ditau.reconstruct.ml import MLSettings, columns_for  # noqa: E402

TINY = {"d_model": 16, "n_blocks": 1, "n_heads": 2, "d_head": 16, "head_blocks": 1,
        "sample_steps": 2}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[bool, Path]:
    """Tiny untrained model files with and without impact parameters ({option: path})."""
    d = tmp_path_factory.mktemp("review_ml_columns")
    data = write_synthetic(d / "ip.parquet", 40, seed=3, impact_parameters=True)
    stats = compute_stats(extract(pq.read_table(data), targets=True))
    out = {}
    for ip in (False, True):
        torch.manual_seed(0)
        cfg = ModelConfig(**TINY, impact_parameters=ip)
        out[ip] = save_model(d / f"ip_{ip}.pt", NeutrinoModel(cfg).state_dict(), cfg, stats,
                             train_config={}, data={})
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Building a network or loading weights into one fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was built or its weights loaded")

    monkeypatch.setattr(NeutrinoModel, "__init__", refuse)
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", refuse)


def test_columns_of_a_model_file_without_building_the_network(model_files, no_network):
    for ip, path in model_files.items():
        want = (*EXTRA_COLUMNS, *(IP_COLUMNS if ip else ()))
        assert read_model_config(path).impact_parameters is ip
        assert model_columns(path) == want and model_columns(str(path)) == want
        assert columns_for(MLSettings(model=path)) == want
        assert columns_for(MLSettings(model=str(path))) == want
    # the shipped models from their files: the default (ditau-cpu-v2) reads the impact
    # parameters, ditau-cpu-v1 does not
    assert model_columns(None) == (*EXTRA_COLUMNS, *IP_COLUMNS)
    assert columns_for(MLSettings()) == (*EXTRA_COLUMNS, *IP_COLUMNS)
    assert columns_for(MLSettings(model="ditau-cpu-v1")) == EXTRA_COLUMNS


def test_the_config_read_alone_is_the_loaded_models(model_files):
    for path in model_files.values():
        tm = load_model(path)
        assert read_model_config(path) == tm.config
        assert model_columns(tm) == model_columns(path)  # a loaded model: its config
        assert columns_for(MLSettings(model=tm)) == model_columns(path)


def test_model_file_errors_when_reading_the_config(model_files, tmp_path, no_network):
    path = model_files[True]
    with pytest.raises(ModelFileError, match=r"nope\.pt: cannot read the model file"):
        columns_for(MLSettings(model=tmp_path / "nope.pt"))
    raw = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[:-100])
    with pytest.raises(ModelFileError, match=r"cut\.pt: checksum mismatch"):
        model_columns(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match=r"text\.pt: not a ditau ML model file"):
        read_model_config(tmp_path / "text.pt")
    payload = read_blob(path, "model")
    for key, value, match in (
            ("feature_set", "other-0", "trained with feature set 'other-0'"),
            ("ip_feature_set", "ip0-000000000000", "impact-parameter features 'ip0-"),
            ("model_config", {**payload["model_config"], "n_heads": 3},
             "inconsistent model file"),
            ("targets", ["px"], "inconsistent model file: its targets")):
        write_blob(tmp_path / "bad.pt", "model", {**payload, key: value})
        with pytest.raises(ModelFileError, match=match):
            model_columns(tmp_path / "bad.pt")
