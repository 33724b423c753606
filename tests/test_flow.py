import math

import numpy as np
import pytest
import torch

from course_utils.dit import DiTConfig, dit_tiny
from course_utils.embeddings import null_caption
from course_utils.flow import (
    clean_estimate,
    drop_condition,
    euler_sample,
    flow_matching_loss,
    gaussian_mixture_velocity,
    generate,
    guided_velocity,
    heun_sample,
    interpolate,
    sample_timesteps,
    sample_trajectory,
    time_grid,
    velocity_target,
)

MEANS = torch.tensor([[-2.0, 1.0], [2.5, -0.5], [0.0, 3.0]])
STDS = torch.tensor([0.3, 0.5, 0.4])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])


def exact_field(x, t, cond=None):
    return gaussian_mixture_velocity(x, t, MEANS, STDS, WEIGHTS)


def sample_mixture(n, gen):
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=gen)
    return MEANS[k] + STDS[k, None] * torch.randn(n, 2, generator=gen)


def velocity_1d_by_hand(x, t, mus, sigmas, pis):
    """E[x1 - x0 | x_t = x] for a 1-D mixture, written out with numpy, independently of the package."""
    num = den = 0.0
    for mu, s, pi in zip(mus, sigmas, pis):
        var = (1 - t) ** 2 + (t * s) ** 2
        density = pi * np.exp(-((x - t * mu) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
        cov = t * s**2 - (1 - t)  # Cov(x1 - x0, x_t) within the component
        num += density * (mu + cov / var * (x - t * mu))
        den += density
    return num / den


def test_t0_is_pure_noise_and_t1_is_data():
    x0, x1 = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    assert torch.equal(interpolate(x0, x1, torch.zeros(4)), x0)
    assert torch.equal(interpolate(x0, x1, torch.ones(4)), x1)
    t = torch.rand(4)
    xt = interpolate(x0, x1, t)
    assert torch.allclose(xt + (1 - t.view(-1, 1, 1, 1)) * velocity_target(x0, x1), x1, atol=1e-6)


def test_closed_form_field_matches_an_independent_1d_computation():
    mus, sigmas, pis = [-1.5, 2.0], [0.4, 0.7], [0.6, 0.4]
    x = torch.linspace(-4, 4, 17)[:, None]
    for t in [0.0, 0.3, 0.8, 0.99]:
        ours = gaussian_mixture_velocity(x, torch.full((17,), t), torch.tensor(mus)[:, None],
                                         torch.tensor(sigmas), torch.tensor(pis))[:, 0]
        ref = velocity_1d_by_hand(x[:, 0].double().numpy(), t, mus, sigmas, pis)
        assert np.allclose(ours.numpy(), ref, atol=1e-4), t


@pytest.mark.parametrize("sampler,steps", [(euler_sample, 200), (heun_sample, 50)])
def test_sampler_with_exact_field_transports_noise_to_the_mixture(sampler, steps):
    gen = torch.Generator().manual_seed(0)
    samples = sampler(exact_field, torch.randn(20000, 2, generator=gen), steps=steps)
    target = sample_mixture(20000, gen)
    assert torch.allclose(samples.mean(0), target.mean(0), atol=0.06)
    assert torch.allclose(samples.std(0), target.std(0), rtol=0.04)
    # each sample lands near one of the modes
    nearest = torch.cdist(samples, MEANS).min(1).values
    assert (nearest < 3 * STDS.max()).float().mean() > 0.98


def test_trajectory_starts_at_the_noise_and_has_every_step():
    noise = torch.randn(8, 2)
    traj = euler_sample(exact_field, noise, steps=10, return_trajectory=True)
    assert traj.shape == (11, 8, 2) and torch.equal(traj[0], noise)
    assert torch.equal(traj[-1], euler_sample(exact_field, noise, steps=10))


def test_exact_field_has_lower_loss_than_a_perturbed_one():
    x1 = sample_mixture(20000, torch.Generator().manual_seed(1))

    def perturbed(x, t, cond=None):
        return exact_field(x, t) + 0.3 * torch.sin(3 * x)

    exact = flow_matching_loss(exact_field, x1, generator=torch.Generator().manual_seed(2))
    worse = flow_matching_loss(perturbed, x1, generator=torch.Generator().manual_seed(2))
    assert exact < worse - 0.02


def test_loss_is_deterministic_with_a_generator():
    x1 = torch.randn(64, 2)
    a = flow_matching_loss(exact_field, x1, generator=torch.Generator().manual_seed(5))
    b = flow_matching_loss(exact_field, x1, generator=torch.Generator().manual_seed(5))
    assert a == b


def test_timestep_schedules():
    gen = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(50000, "uniform", gen)
    logit = sample_timesteps(50000, "logit_normal", gen)
    assert 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.01
    assert abs(logit.mean() - 0.5) < 0.01 and logit.std() < uniform.std()  # concentrated in the middle
    assert abs(torch.logit(logit).std() - 1) < 0.02
    with pytest.raises(ValueError, match="schedule must be one of"):
        sample_timesteps(3, "cosine")


def test_cfg_scale_one_is_the_conditional_field_and_scale_extrapolates():
    def model(x, t, cond):
        return x * 0 + cond.float().view(-1, 1)

    x, t = torch.zeros(3, 2), torch.zeros(3)
    cond, null = torch.tensor([1, 2, 3]), torch.tensor([0])
    assert torch.equal(guided_velocity(model, x, t, cond), model(x, t, cond))
    guided = guided_velocity(model, x, t, cond, null, cfg_scale=3.0)
    assert torch.equal(guided[:, 0], 3.0 * cond.float())
    with pytest.raises(ValueError, match="null condition"):
        guided_velocity(model, x, t, cond, None, cfg_scale=2.0)


def test_drop_condition_replaces_the_chosen_fraction_with_null():
    cond = torch.arange(1, 10001)
    dropped = drop_condition(cond, torch.tensor([0]), 0.25, torch.Generator().manual_seed(0))
    frac = (dropped == 0).float().mean().item()
    assert math.isclose(frac, 0.25, abs_tol=0.02)
    assert torch.equal(dropped[dropped != 0], cond[dropped != 0])
    ids, mask = torch.ones(100, 5, dtype=torch.long), torch.ones(100, 5, dtype=torch.bool)
    null = (torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.bool))
    d_ids, d_mask = drop_condition((ids, mask), null, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(d_ids.any(1), d_mask.any(1)) and 20 < (~d_mask.any(1)).sum() < 80


class ConstantDenoiser(torch.nn.Module):
    """A caption model that predicts v = 1 everywhere (v = 2 for the null caption): a closed-form sampler check."""

    def __init__(self):
        super().__init__()
        self.config = DiTConfig(input_size=4, in_channels=4, max_len=12)
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t, cond):
        ids, mask = cond
        return self.weight * torch.where(mask.any(1), 1.0, 2.0).view(-1, 1, 1, 1).expand_as(x)

    def null_condition(self):
        return null_caption(12)


def test_sample_trajectory_integrates_the_guided_field_from_the_seeded_noise():
    model = ConstantDenoiser()
    path = sample_trajectory(model, ["two small red circles", "a blue square in the center"], steps=4, cfg_scale=3.0,
                             seed=5)
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    assert path.shape == (5, 2, 4, 4, 4) and torch.equal(path[0], noise)
    # guided velocity: 2 + 3 (1 - 2) = -1, so x_1 = noise - 1
    assert torch.allclose(path[-1], noise - 1.0, atol=1e-6)


def test_generate_keeps_the_models_mode_and_takes_sizes_from_its_config():
    torch.manual_seed(0)
    model = dit_tiny(depth=1).train()
    images = generate(model, ["two small red circles"] * 3, steps=2, cfg_scale=2.0)
    assert images.shape == (3, 3, 32, 32) and model.training
    model.eval()
    assert generate(model, ["two small red circles"], steps=1, latent_size=4).shape == (1, 3, 16, 16)
    assert not model.training


def test_generate_with_heun_is_heun_sampling_of_the_seeded_noise_and_unknown_samplers_are_named():
    from course_utils.flow import caption_batch, heun_sample
    from course_utils.vae import load_vae

    torch.manual_seed(0)
    model = dit_tiny(depth=1).eval()
    captions = ["two small red circles", "a blue square in the center"]
    with torch.no_grad():
        for p in model.parameters():  # a zero-initialised model's field is 0: give it one to integrate
            p.normal_(0, 0.05)
    decoded = generate(model, captions, steps=3, cfg_scale=2.0, seed=4, sampler="heun")
    noise, cond = caption_batch(model, captions, seed=4)
    latents = heun_sample(model, noise, cond, 3, model.null_condition(), 2.0)
    assert torch.allclose(decoded, load_vae().decode(latents), atol=1e-5)
    assert not torch.allclose(decoded, generate(model, captions, steps=3, cfg_scale=2.0, seed=4), atol=1e-3)
    with pytest.raises(ValueError, match=r"sampler must be one of \('euler', 'heun'\), got 'rk4'"):
        generate(model, captions, sampler="rk4")


def test_generate_refuses_a_lone_string():
    with pytest.raises(ValueError, match="list of strings"):
        generate(dit_tiny(depth=1), "a red circle above a blue square")


def test_clean_estimate_recovers_the_data_on_a_straight_path():
    x0, x1, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.rand(3)
    xt = interpolate(x0, x1, t)
    assert torch.allclose(clean_estimate(xt, t, velocity_target(x0, x1)), x1, atol=1e-6)


def test_time_grid_runs_from_noise_to_data():
    assert torch.allclose(time_grid(4), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    with pytest.raises(ValueError, match="steps must be at least 1"):
        time_grid(0)


def test_guidance_and_dropout_refuse_values_out_of_range():
    x, t = torch.randn(2, 2), torch.rand(2)
    with pytest.raises(ValueError, match="cfg_scale must be a finite number"):
        guided_velocity(exact_field, x, t, None, None, cfg_scale=float("nan"))
    with pytest.raises(ValueError, match="cfg_scale must be a finite number"):
        guided_velocity(exact_field, x, t, None, None, cfg_scale="2")
    with pytest.raises(ValueError, match=r"dropout p must be a probability in \[0, 1\], got 1.5"):
        drop_condition(torch.zeros(4, dtype=torch.long), torch.zeros(1, dtype=torch.long), 1.5)


def test_a_null_condition_of_the_wrong_shape_is_named_by_the_sampler():
    model = dit_tiny(depth=1).eval()
    noise = torch.randn(2, 4, 8, 8)
    ids, mask = torch.ones(2, 12, dtype=torch.long), torch.ones(2, 12, dtype=torch.bool)
    wrong = {
        "shorter caption": null_caption(8),
        "ids only": null_caption(12)[0],
        "float mask": (null_caption(12)[0], null_caption(12)[1].float()),
        "batch 3": tuple(c.expand(3, -1) for c in null_caption(12)),
        "no batch axis": tuple(c[0] for c in null_caption(12)),
    }
    for null in wrong.values():
        for sample in (euler_sample, heun_sample):
            with pytest.raises(ValueError, match=r"null_cond must be like cond with batch 1, \(1, 12\) torch.int64 "
                                                 r"and \(1, 12\) torch.bool"):
                sample(model, noise, (ids, mask), 2, null, cfg_scale=2.0)
    with pytest.raises(ValueError, match="null_cond must be like cond"):
        guided_velocity(model, noise, torch.rand(2), (ids, mask), null_caption(8), cfg_scale=2.0)
    both = euler_sample(model, noise, (ids, mask), 2, tuple(c.expand(2, -1) for c in null_caption(12)), cfg_scale=2.0)
    assert torch.equal(both, euler_sample(model, noise, (ids, mask), 2, null_caption(12), cfg_scale=2.0))


def test_interpolate_and_the_loss_name_mismatched_shapes():
    x0, x1, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.rand(3)
    with pytest.raises(ValueError, match=r"x0 \(noise\) must have the shape of x1 \(3, 4, 2, 2\), got \(2, 4, 2, 2\)"):
        interpolate(x0[:2], x1, t)
    with pytest.raises(ValueError, match=r"t must be a float tensor \(3,\), one time per sample of x1"):
        interpolate(x0, x1, t[:2])
    with pytest.raises(ValueError, match=r"t must be a float tensor \(3,\).* got \(3, 1\)"):
        interpolate(x0, x1, t[:, None])
    with pytest.raises(ValueError, match=r"t must be a float tensor \(3,\).* got \(\) of torch.int64"):
        interpolate(x0, x1, torch.tensor(1))
    with pytest.raises(ValueError, match=r"x1 must be a float tensor \(B, ...\), got \(3, 4\) of torch.uint8"):
        flow_matching_loss(exact_field, torch.zeros(3, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"x1 must be a float tensor \(B, ...\), got list"):
        flow_matching_loss(exact_field, [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"steps must be at least 1 \(a whole number of sampler steps\), got 2.5"):
        euler_sample(exact_field, torch.randn(3, 2), steps=2.5)
    with pytest.raises(ValueError, match=r"noise must be a float tensor \(B, ...\) drawn from N\(0, I\), got list"):
        heun_sample(exact_field, [0.0, 1.0])


def test_velocity_noise_and_score_are_one_prediction_in_three_coordinates():
    """On a Gaussian mixture the exact velocity, turned into a noise and a score, gives the exact score of p_t
    (computed independently: autograd of the closed-form log density of x_t)."""
    from course_utils.flow import noise_estimate, score_estimate

    means = torch.tensor([[-2.0, 1.5], [2.0, 1.5], [0.0, -2.0]], dtype=torch.float64)
    stds = torch.tensor([0.3, 0.5, 0.4], dtype=torch.float64)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = (2 * torch.randn(64, 2, generator=gen, dtype=torch.float64)).requires_grad_(True)
    t = torch.rand(64, generator=gen, dtype=torch.float64) * 0.98
    var = (1 - t[:, None]) ** 2 + t[:, None] ** 2 * stds[None] ** 2  # (B, K)
    sq = ((x[:, None] - t[:, None, None] * means[None]) ** 2).sum(-1)  # (B, K)
    log_p = torch.logsumexp(torch.log(weights) - 0.5 * sq / var - torch.log(2 * math.pi * var), dim=1)
    exact_score = torch.autograd.grad(log_p.sum(), x)[0]
    v = gaussian_mixture_velocity(x.detach(), t, means, stds, weights)
    assert torch.allclose(score_estimate(x.detach(), t, v), exact_score, atol=1e-9)
    x1 = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    x0 = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    xt = interpolate(x0, x1, t)
    assert torch.allclose(noise_estimate(xt, t, velocity_target(x0, x1)), x0, atol=1e-12)  # exact on a straight path
    with pytest.raises(ValueError, match="t < 1"):
        score_estimate(xt, torch.ones(64, dtype=torch.float64), v)
