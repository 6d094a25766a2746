"""ML neutrino reconstruction: a PET point-cloud body run once per event, a light generative
head (flow matching or diffusion) iterated over the sampling steps, or a deterministic
regression head, one model for the seven channels.

Modules (all but :mod:`ditau.ml.hashing` and :mod:`ditau.ml.synthetic` need torch; install the
``ml`` extra):

- :mod:`ditau.ml.features`: event table -> point cloud, conditions, targets; normalisation,
  frames and augmentation; the feature-set id stored with a model; optionally
  (``ModelConfig.impact_parameters``) the legs' track impact parameters as object features.
- :mod:`ditau.ml.model`: PET body, generative head, :class:`~ditau.ml.model.NeutrinoModel`.
- :mod:`ditau.ml.parametrisation`: the target frames: ``lab`` (Cartesian nu momenta) and
  ``visible`` (per leg ln |p_nu|/|p_vis|, the nu azimuth about the visible axis, m_nunu; the
  polar angle from the tau mass shell), forward and inverse, standardisation.
- :mod:`ditau.ml.generative`: diffusion (cosine log-SNR, v-prediction, DDIM), conditional
  flow matching (linear path, Euler/Heun) and the deterministic regression baseline.
- :mod:`ditau.ml.io`: model files and checkpoints (checksummed, clear errors).
- :mod:`ditau.ml.config`: :class:`~ditau.ml.config.TrainConfig` (YAML-loadable).
- :mod:`ditau.ml.data`: training data loading and the validation split.
- :mod:`ditau.ml.optim`: AdamW / Lion, the learning-rate schedule, the weight EMA.
- :mod:`ditau.ml.device`: device choice and the torchrun process group.
- :mod:`ditau.ml.train`: the training loop, :func:`~ditau.ml.train.train` (``ditau train``;
  re-exports :class:`~ditau.ml.config.TrainConfig`).
- :mod:`ditau.ml.infer`: the ``ml`` reconstruction method (``ditau reconstruct --method ml``).
- :mod:`ditau.ml.export`: ONNX export (``ditau export``).
- :mod:`ditau.ml.hashing`: counter-based random numbers (data split, sampling noise).
- :mod:`ditau.ml.synthetic`: small synthetic event tables with a known answer (tests, smoke).

Importing :mod:`ditau.ml` itself does not import torch.
"""
