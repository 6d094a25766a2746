"""ML reconstruction, no training: features, frames, noise, samplers, model invariances."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from ditau.ml.features import (  # noqa: E402
    FEATURE_SET_ID,
    N_FEATURES,
    ONE_HOT_CHANNELS,
    TYPES,
    compute_stats,
    encode,
    extract,
    rotate_events,
    rotate_x_pi,
    rotate_z,
)
from ditau.ml.generative import Diffusion, FlowMatching, get_objective  # noqa: E402
from ditau.ml.hashing import event_noise, uniform_hash  # noqa: E402
from ditau.ml.infer import predict, sample_neutrinos  # noqa: E402
from ditau.ml.io import TrainedModel  # noqa: E402
from ditau.ml.model import ModelConfig, NeutrinoModel, repeat_context  # noqa: E402
from ditau.ml.optim import Lion, lr_factor  # noqa: E402
from ditau.ml.synthetic import synthetic_events  # noqa: E402

torch.set_num_threads(1)  # the test machine's cores are shared: one thread is fastest

TINY = {"d_model": 16, "n_blocks": 1, "n_heads": 2, "d_head": 16, "head_blocks": 2}


def rotate_table(table: pa.Table, a: float) -> pa.Table:
    """Every (x, y) pair of the event table rotated about the beam axis by ``a``."""
    d = {n: table[n].to_numpy(zero_copy_only=False) for n in table.column_names}
    c, s = math.cos(a), math.sin(a)
    pairs = [("met_x", "met_y")]
    for pre in ("reco_chg", "reco_neu", "nu", "tau"):
        pairs += [(f"{pre}_px_{leg}", f"{pre}_py_{leg}") for leg in ("p", "m")]
    pairs += [(f"jet{j}_px", f"jet{j}_py") for j in (1, 2, 3)]
    for x, y in pairs:
        d[x], d[y] = c * d[x] - s * d[y], s * d[x] + c * d[y]
    return pa.table(d)


def tiny_model(frame: str = "canonical", objective: str = "fm", seed: int = 0,
               table: pa.Table | None = None) -> TrainedModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(**TINY, frame=frame, objective=objective, sample_steps=3)
    table = synthetic_events(60, seed=5) if table is None else table
    stats = compute_stats(extract(table, targets=True))
    return TrainedModel(NeutrinoModel(cfg).eval(), cfg, stats, FEATURE_SET_ID)


# --- features ---------------------------------------------------------------------------------


def test_point_cloud_slots_types_masks_and_channels():
    t = synthetic_events(50, seed=1)
    ev = extract(t, targets=True)
    mode_p = t["reco_mode_p"].to_numpy(zero_copy_only=False)
    assert ev.usable.all() and ev.p4.shape == (50, 7, 4)
    assert ev.mask[:, 0].all() and ev.mask[:, 2].all()
    # neutral slot present exactly for rho legs
    assert np.array_equal(ev.mask[:, 1], mode_p == "rho")
    assert np.all(ev.otype[ev.mask[:, 1], 1] == TYPES.index("neutral"))
    e_leg = mode_p == "e"
    assert np.all(ev.otype[e_leg, 0] == TYPES.index("e"))
    n_jets = t["n_jets"].to_numpy()
    assert np.array_equal(ev.mask[:, 4:].sum(1), n_jets)
    assert np.all(ev.p4[~ev.mask] == 0.0)
    ch = t["reco_channel"].to_numpy(zero_copy_only=False)
    assert [ONE_HOT_CHANNELS[i] for i in ev.channel] == list(ch)
    assert np.allclose(ev.target[:, 0], t["nu_px_p"].to_numpy())


def test_bad_inputs_and_foreign_channels_are_not_usable_with_a_reason():
    d = {n: c.to_numpy(zero_copy_only=False).copy() for n, c in
         zip(synthetic_events(6, seed=2).column_names, synthetic_events(6, seed=2).columns,
             strict=True)}
    d["reco_mode_p"][1], d["reco_mode_m"][1] = "e", "mu"  # dileptonic: not an ML channel
    d["reco_chg_px_m"][2] = np.nan
    ev = extract(pa.table(d))
    assert list(ev.usable) == [True, False, False, True, True, True]
    assert "legs e/mu (channel other)" in ev.reason[1]
    assert "tau- leg" in ev.reason[2]


def test_encoding_is_zero_for_padded_objects_and_standardised():
    t = synthetic_events(200, seed=3)
    ev = extract(t, targets=True)
    stats = compute_stats(ev)
    x, coords, cond = encode(ev.to_batch(), stats)
    assert x.shape == (200, 7, N_FEATURES) and cond.shape == (200, 2 + len(ONE_HOT_CHANNELS))
    m = torch.as_tensor(ev.mask)
    assert torch.all(x[~m] == 0) and torch.all(coords[~m] == 0)
    assert abs(float(x[..., 0][m].mean())) < 1e-4 and abs(float(x[..., 0][m].std()) - 1) < 0.01
    assert torch.allclose(cond[:, 2:].sum(1), torch.ones(200))
    # charge: +1 / -1 for the legs' charged objects, 0 for neutrals
    assert torch.all(x[:, 0, 5] == 1) and torch.all(x[:, 2, 5] == -1)
    assert torch.all(x[:, 1, 5] == 0)


def test_table_rotation_equals_feature_rotation_and_stats_are_invariant():
    t = synthetic_events(30, seed=4)
    a = 0.83
    ev, ev_rot = extract(t, targets=True), extract(rotate_table(t, a), targets=True)
    b = rotate_z(ev.to_batch(dtype=torch.float64), torch.full((30,), a, dtype=torch.float64))
    assert torch.allclose(b.p4, torch.as_tensor(ev_rot.p4), atol=1e-9)
    assert torch.allclose(b.met, torch.as_tensor(ev_rot.met), atol=1e-9)
    assert torch.allclose(b.target, torch.as_tensor(ev_rot.target), atol=1e-9)
    r = rotate_events(ev, np.full(30, a))
    assert np.allclose(r.p4, ev_rot.p4) and np.allclose(r.target, ev_rot.target)
    s0, s1 = compute_stats(ev), compute_stats(ev_rot)
    for k, v in s0.to_dict().items():
        assert math.isclose(v, s1.to_dict()[k], rel_tol=1e-9), k
    # the rotation by pi about x maps eta -> -eta, phi -> -phi
    f = rotate_x_pi(ev.to_batch(dtype=torch.float64), torch.ones(30, dtype=torch.bool))
    x0, c0, _ = encode(ev.to_batch(dtype=torch.float64), s0)
    x1, c1, _ = encode(f, s0)
    assert torch.allclose(c1, -c0, atol=1e-9)
    assert torch.allclose(x1[..., 0], x0[..., 0]) and torch.allclose(x1[..., 3], -x0[..., 3])


def test_feature_set_id_is_stable_text():
    assert FEATURE_SET_ID.startswith("v1-") and len(FEATURE_SET_ID) == 15


# --- counter-based noise ------------------------------------------------------------------------


def test_event_noise_is_keyed_by_event_and_candidate():
    ids = np.array([5, 17, 1 << 40])
    a = event_noise(ids, seed=3, candidates=4)
    b = event_noise(ids[::-1], seed=3, candidates=6)
    assert np.array_equal(a, b[::-1, :4])  # order- and K-independent
    assert not np.allclose(a, event_noise(ids, seed=4, candidates=4))
    big = event_noise(np.arange(20000), seed=0, candidates=5)
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    u = uniform_hash(np.arange(100000), 7)
    assert 0 < u.min() and u.max() <= 1 and abs(u.mean() - 0.5) < 0.005


# --- objectives and samplers on analytic heads --------------------------------------------------


MU = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0], dtype=torch.float64)
S = torch.tensor([0.5, 2.0, 1.0, 0.1, 1.5, 0.3], dtype=torch.float64)


def fm_gaussian_head(z, t):
    """Exact flow-matching velocity for N(MU, S^2) data on the linear path."""
    tt = t[:, None]
    var = (1 - tt) ** 2 + tt**2 * S**2  # Var x_t
    return MU + (tt * S**2 - (1 - tt)) / var * (z - tt * MU)  # E[x1 - x0 | x_t]


def diffusion_gaussian_head(dif):
    def head(z, t):
        a, s = (u[:, None] for u in dif.alpha_sigma(t))
        x_hat = MU + a * S**2 / (a**2 * S**2 + s**2) * (z - a * MU)  # E[x | z_t]
        eps_hat = (z - a * x_hat) / s
        return a * eps_hat - s * x_hat  # v = alpha eps - sigma x
    return head


@pytest.mark.parametrize("sampler,order", [("heun", 2), ("euler", 1)])
def test_flow_matching_samplers_transport_noise_to_the_data(sampler, order):
    noise = torch.randn(1000, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = MU + S * noise  # the linear-path flow of Gaussians is the affine map x1 = MU + S x0
    err = [float((FlowMatching().sample(fm_gaussian_head, noise, n, sampler) - want).abs().max())
           for n in (16, 64)]
    assert err[1] < (0.02 if order == 2 else 0.2)
    assert err[1] < err[0] / 4**order * 1.5  # converges at the sampler's order


def test_ddim_with_exact_v_prediction_recovers_the_data_distribution():
    dif = Diffusion()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    a, s = dif.alpha_sigma(t)
    assert torch.allclose(a**2 + s**2, torch.ones_like(a))
    assert dif.logsnr(t)[0] > 14.9 and dif.logsnr(t)[-1] < -14.9
    noise = torch.randn(4000, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = MU + S * noise  # the probability-flow map of Gaussian data is affine too
    out = {n: dif.sample(diffusion_gaussian_head(dif), noise, n) for n in (50, 200)}
    err = {n: float(((o - want).abs() / S).mean()) for n, o in out.items()}
    assert err[200] < 0.03 and err[200] < err[50] / 3.5  # first order in the step size
    assert torch.allclose(out[200].std(0), want.std(0), rtol=0.05)
    assert torch.allclose(out[200].mean(0), want.mean(0), atol=0.02)


def test_training_targets_are_the_objectives_definitions():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    z, t, u = FlowMatching().training_inputs(x, g)
    g = torch.Generator().manual_seed(3)
    t2 = torch.rand(50, generator=g)
    x0 = torch.randn(50, 6, generator=g)
    assert torch.equal(t, t2) and torch.allclose(u, x - x0)
    assert torch.allclose(z, (1 - t[:, None]) * x0 + t[:, None] * x)
    dif = Diffusion()
    z, t, v = dif.training_inputs(x, torch.Generator().manual_seed(4))
    a, s = (w[:, None] for w in dif.alpha_sigma(t))
    eps = (z - a * x) / s
    assert torch.allclose(v, a * eps - s * x, atol=1e-4)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_objective("fm").sample(fm_gaussian_head, x.double(), 2, "ddim")


# --- optimiser and schedule ---------------------------------------------------------------------


def test_lion_step_and_schedule():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    p.grad = torch.tensor([0.3, -0.1, 0.0])
    opt.step()
    # theta (1 - lr wd) - lr sign((1 - b1) g), m = (1 - b2) g
    assert torch.allclose(p.detach(), torch.tensor([1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1, 0.0]))
    assert torch.allclose(opt.state[p]["exp_avg"], 0.01 * torch.tensor([0.3, -0.1, 0.0]))
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


# --- model invariances --------------------------------------------------------------------------


def test_canonical_frame_is_exactly_rotation_equivariant_for_any_weights():
    t = synthetic_events(40, seed=6)
    for frame, equivariant in (("canonical", True), ("lab", False)):
        tm = tiny_model(frame)
        ref = predict(t, model=tm, candidates=3, seed=11, device="cpu").nu
        for a in (0.4, 2.9):
            got = predict(rotate_table(t, a), model=tm, candidates=3, seed=11,
                          device="cpu").nu
            c, s = math.cos(a), math.sin(a)
            want = ref.reshape(40, 3, 2, 3).copy()
            x, y = want[..., 0].copy(), want[..., 1].copy()
            want[..., 0], want[..., 1] = c * x - s * y, s * x + c * y
            dev = np.max(np.abs(got - want.reshape(40, 3, 6)))
            if equivariant:
                assert dev < 1e-3, (frame, a, dev)
            else:  # an untrained lab-frame network is not: the test can tell
                assert dev > 0.1, (frame, a, dev)


def test_padded_objects_do_not_change_the_output_and_missing_objects_are_fine():
    t = synthetic_events(30, seed=7, jet_rate=0.0, channels=("pipi", "epi", "mupi"))
    ev = extract(t)
    assert not ev.mask[:, [1, 3, 4, 5, 6]].any()  # no neutral, no jets at all
    tm = tiny_model()
    out = sample_neutrinos(tm, ev, candidates=4, seed=1)
    assert np.all(np.isfinite(out))
    junk = extract(t)
    rng = np.random.default_rng(0)
    junk.p4[~junk.mask] = rng.normal(0, 300, junk.p4[~junk.mask].shape)
    junk.otype[~junk.mask] = -1
    assert np.array_equal(sample_neutrinos(tm, junk, candidates=4, seed=1), out)
    # a different seed gives different candidates; the same seed the same ones
    assert not np.allclose(sample_neutrinos(tm, ev, candidates=4, seed=2), out)
    assert np.array_equal(sample_neutrinos(tm, ev, candidates=4, seed=1), out)


def test_body_runs_once_per_batch_and_candidates_do_not_depend_on_batching():
    t = synthetic_events(25, seed=8)
    ev = extract(t)
    tm = tiny_model()
    calls = {"body": 0, "head": 0}
    hooks = [tm.model.body.register_forward_hook(lambda *_: calls.__setitem__(
        "body", calls["body"] + 1)),
             tm.model.head.register_forward_hook(lambda *_: calls.__setitem__(
                 "head", calls["head"] + 1))]
    try:
        out = sample_neutrinos(tm, ev, candidates=5, steps=3, sampler="heun", seed=0)
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"body": 1, "head": 6}  # Heun: 2 head evaluations per step
    small = sample_neutrinos(tm, ev, candidates=5, steps=3, sampler="heun", seed=0,
                             batch_size=7)
    assert np.allclose(small, out, atol=1e-4)
    more = sample_neutrinos(tm, ev, candidates=8, steps=3, sampler="heun", seed=0)
    assert np.allclose(more[:, :5], out, atol=1e-4)  # candidate k is keyed, not positional


def test_candidates_are_queries_of_their_own_events_tokens_in_the_cross_attention():
    # the keys/values stay per event (not repeated per candidate): the same result as the
    # fully repeated context, which the exported ONNX head is given
    ev = extract(synthetic_events(12, seed=9))
    tm = tiny_model()
    assert tm.config.cross_attention
    b = ev.to_batch(tm.device)
    x, coords, cond = encode(b, tm.stats)
    with torch.no_grad():
        prepared = tm.model.encode(x, coords, b.mask, cond)
        k = 3
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(len(ev) * k, tm.model.head.n_targets, generator=gen)
        t = torch.full((len(ev) * k,), 0.4)
        shared = tm.model.step(z, t, *repeat_context(prepared, k))
        full = tm.model.step(z, t, *(p.repeat_interleave(k, dim=0) for p in prepared))
        # candidate-major rows would pair candidates with other events' tokens
        wrong = tm.model.step(z, t, prepared[0].repeat_interleave(k, dim=0),
                              prepared[1].repeat(k, 1),
                              *(p.repeat(k, 1, 1, 1) for p in prepared[2:]))
    assert len(prepared) > 2 and repeat_context(prepared, k)[2].shape[0] == len(ev)
    assert torch.allclose(shared, full, atol=1e-5)
    assert not torch.allclose(wrong, full, atol=1e-3)


def test_model_config_is_validated():
    with pytest.raises(ValueError, match="objective"):
        ModelConfig(objective="gan")
    with pytest.raises(ValueError, match="multiples of n_heads"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="unknown key"):
        ModelConfig.from_dict({"d_model": 16, "depth": 3})
