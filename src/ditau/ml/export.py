"""ONNX export of a trained model (``ditau export MODEL -o model.onnx``).

Two layouts:

- *unrolled* (default, one file): the body, then the sampler unrolled for a fixed number of
  steps. Inputs ``x`` (B, 7, F) float32 object features (F = 12; 17 for a model with
  ``impact_parameters``, the last 5 from :func:`ditau.ml.features.ip_features`, named with
  the others in the metadata ``ditau_object_features``), ``coords`` (B, 7, 2) kNN
  coordinates, ``mask`` (B, 7) bool, ``cond`` (B, 9) condition (all from
  :func:`ditau.ml.features.encode`, in the model's frame), ``noise`` (B, K, D) standard
  normal; output ``samples`` (B, K, D): the standardised targets. D and their meaning depend
  on the model's target frame (``ditau_model_config`` metadata, ``target_frame``): ``lab``,
  D = 6, nu momenta in the model's frame (multiply by the target scales, and rotate back for
  the ``canonical`` frame); ``visible``, D = 8, the per-leg visible-frame coordinates
  (unstandardise with ``target_mean``/``target_std`` of ``ditau_stats`` and invert with the
  event's visible objects, :func:`ditau.ml.parametrisation.decode_visible`). A
  ``regression`` model ignores the noise (every candidate the same).
- *split* (two files, ``STEM.body.onnx`` and ``STEM.head.onnx``): the body (inputs as above,
  outputs ``prepared_0..``: context, token mask, cross-attention keys/values) and one head
  step (inputs ``z`` (N, D), ``t`` (N,), ``prepared_*`` repeated per candidate; output
  ``out`` (N, D)), for a sampler loop written in the host language.

Batch and candidate axes are dynamic. The files carry metadata (``metadata_props``): the
feature-set id, the normalisation statistics, the model config, objective, sampler and steps,
as JSON strings. Uses PyTorch's TorchScript-based exporter (no extra dependency besides
``onnx``); :func:`compare_onnx` runs a file in ONNX Runtime against PyTorch.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ditau.ml.features import (
    IP_FEATURE_SET_ID,
    IP_FEATURES,
    N_COND,
    N_FEATURES,
    N_OBJECTS,
    N_TARGETS,
    OBJECT_FEATURES,
)
from ditau.ml.generative import get_objective
from ditau.ml.io import TrainedModel, load_model
from ditau.ml.model import NeutrinoModel
from ditau.schema import check_writable

OPSET = 17


class UnrolledSampler(nn.Module):
    """Body + ``steps`` sampler steps as one module (for export)."""

    def __init__(self, model: NeutrinoModel, steps: int, sampler: str) -> None:
        super().__init__()
        self.model = model
        self.objective = get_objective(model.config.objective)
        self.steps, self.sampler = steps, sampler

    def forward(self, x: Tensor, coords: Tensor, mask: Tensor, cond: Tensor,
                noise: Tensor) -> Tensor:
        b, k = noise.shape[0], noise.shape[1]
        prepared = tuple(
            p[:, None].expand(b, k, *p.shape[1:]).reshape(b * k, *p.shape[1:])
            for p in self.model.encode(x, coords, mask, cond))

        def head(z: Tensor, t: Tensor) -> Tensor:
            return self.model.step(z, t, *prepared)

        d = self.model.head.n_targets
        z = self.objective.sample(head, noise.reshape(b * k, d), self.steps, self.sampler)
        return z.reshape(b, k, d)


class _Body(nn.Module):
    def __init__(self, model: NeutrinoModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, coords: Tensor, mask: Tensor,
                cond: Tensor) -> tuple[Tensor, ...]:
        return self.model.encode(x, coords, mask, cond)


class _Step(nn.Module):
    def __init__(self, model: NeutrinoModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, t: Tensor, *prepared: Tensor) -> Tensor:
        return self.model.step(z, t, *prepared)


def example_inputs(batch: int = 3, candidates: int = 2, seed: int = 0,
                   n_targets: int = N_TARGETS, n_features: int = N_FEATURES
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Random inputs of the right shapes (some objects masked; ``x`` (batch, 7,
    ``n_features``); noise (batch, candidates, ``n_targets``)), seeded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, N_OBJECTS, n_features, generator=g)
    coords = torch.randn(batch, N_OBJECTS, 2, generator=g)
    mask = torch.rand(batch, N_OBJECTS, generator=g) < 0.7
    mask[:, 0] = True
    mask[:, 2] = True
    x = x * mask[..., None]
    coords = coords * mask[..., None]
    cond = torch.randn(batch, N_COND, generator=g)
    noise = torch.randn(batch, candidates, n_targets, generator=g)
    return x, coords, mask, cond, noise


def _metadata(tm: TrainedModel, extra: dict[str, Any]) -> dict[str, str]:
    ip = tm.config.impact_parameters
    if ip:  # the layout of x and the definition of its impact-parameter features
        extra = {**extra, "object_features": [*OBJECT_FEATURES, *IP_FEATURES],
                 "ip_feature_set": IP_FEATURE_SET_ID}
    return {"ditau_feature_set": tm.feature_set,
            "ditau_stats": json.dumps(tm.stats.to_dict()),
            "ditau_model_config": json.dumps(tm.config.to_dict()),
            **{f"ditau_{k}": json.dumps(v) for k, v in extra.items()}}


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: list[str],
            outputs: list[str], dynamic: dict[str, dict[int, str]],
            metadata: dict[str, str]) -> Path:
    try:
        import onnx
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx package: pip install onnx") from err
    check_writable(path)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one (which needs
        # onnxscript); it warns, and the tracer warns about Python-side shape arithmetic.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, opset_version=OPSET)
    proto = onnx.load(str(path))
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return path


def export_onnx(model: str | os.PathLike[str] | TrainedModel, out: str | os.PathLike[str], *,
                steps: int | None = None, sampler: str | None = None,
                split: bool = False) -> list[Path]:
    """Export ``model`` to ONNX at ``out`` (unrolled sampler), or with ``split`` to
    ``STEM.body.onnx`` and ``STEM.head.onnx``. Returns the written paths."""
    tm = model if isinstance(model, TrainedModel) else load_model(model, "cpu")
    net = tm.model.to("cpu").eval()
    objective = get_objective(tm.config.objective)
    steps = steps or tm.config.sample_steps or objective.default_steps
    sampler = sampler or tm.config.sampler or objective.default_sampler
    objective._check(steps, sampler)
    dim = net.head.n_targets
    x, coords, mask, cond, noise = example_inputs(n_targets=dim,
                                                  n_features=net.body.n_features)
    ev_axes = {"x": {0: "batch"}, "coords": {0: "batch"}, "mask": {0: "batch"},
               "cond": {0: "batch"}}
    out = Path(out)
    with torch.no_grad():
        if not split:
            meta = _metadata(tm, {"layout": "unrolled", "objective": tm.config.objective,
                                  "sampler": sampler, "steps": steps})
            return [_export(UnrolledSampler(net, steps, sampler), (x, coords, mask, cond, noise),
                            out, ["x", "coords", "mask", "cond", "noise"], ["samples"],
                            {**ev_axes, "noise": {0: "batch", 1: "candidates"},
                             "samples": {0: "batch", 1: "candidates"}}, meta)]
        prepared = net.encode(x, coords, mask, cond)
        names = [f"prepared_{i}" for i in range(len(prepared))]
        stem = out.name[:-5] if out.name.endswith(".onnx") else out.name
        body_path, head_path = out.with_name(f"{stem}.body.onnx"), out.with_name(
            f"{stem}.head.onnx")
        meta = _metadata(tm, {"layout": "split", "objective": tm.config.objective,
                              "sampler": sampler, "steps": steps})
        _export(_Body(net), (x, coords, mask, cond), body_path,
                ["x", "coords", "mask", "cond"], names,
                {**ev_axes, **{n: {0: "batch"} for n in names}}, meta)
        z = torch.randn(x.shape[0], dim, generator=torch.Generator().manual_seed(1))
        t = torch.full((x.shape[0],), 0.5)
        _export(_Step(net), (z, t, *prepared), head_path, ["z", "t", *names], ["out"],
                {"z": {0: "n"}, "t": {0: "n"}, "out": {0: "n"},
                 **{n: {0: "n"} for n in names}}, meta)
    return [body_path, head_path]


def compare_onnx(paths: list[Path], model: str | os.PathLike[str] | TrainedModel, *,
                 batch: int = 5, candidates: int = 3, seed: int = 1) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch on random inputs of a
    shape other than the export's (checks the dynamic axes too)."""
    import onnxruntime as ort

    tm = model if isinstance(model, TrainedModel) else load_model(model, "cpu")
    net = tm.model.to("cpu").eval()
    dim = net.head.n_targets
    x, coords, mask, cond, noise = example_inputs(batch, candidates, seed, dim,
                                                  net.body.n_features)
    feeds = {"x": x.numpy(), "coords": coords.numpy(), "mask": mask.numpy(),
             "cond": cond.numpy()}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    with torch.no_grad():
        if len(paths) == 1:
            meta = read_metadata(paths[0])
            ref = UnrolledSampler(net, meta["steps"], meta["sampler"])(x, coords, mask, cond,
                                                                       noise).numpy()
            sess = ort.InferenceSession(str(paths[0]), opts, providers=["CPUExecutionProvider"])
            got = sess.run(["samples"], {**feeds, "noise": noise.numpy()})[0]
            return float(np.max(np.abs(got - ref)))
        body = ort.InferenceSession(str(paths[0]), opts, providers=["CPUExecutionProvider"])
        head = ort.InferenceSession(str(paths[1]), opts, providers=["CPUExecutionProvider"])
        prepared = net.encode(x, coords, mask, cond)
        got_prep = body.run(None, feeds)
        diff = max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) -
                                       b.numpy().astype(np.float64))))
                   for a, b in zip(got_prep, prepared, strict=True))
        z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed + 1))
        t = torch.rand(batch, generator=torch.Generator().manual_seed(seed + 2))
        ref = net.step(z, t, *prepared).numpy()
        got = head.run(["out"], {"z": z.numpy(), "t": t.numpy(),
                                 **{f"prepared_{i}": p.numpy()
                                    for i, p in enumerate(prepared)}})[0]
        return max(diff, float(np.max(np.abs(got - ref))))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``ditau_*`` metadata of an exported file (JSON values decoded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key[len("ditau_"):]: json.loads(p.value) if p.key != "ditau_feature_set"
            else p.value for p in proto.metadata_props if p.key.startswith("ditau_")}
