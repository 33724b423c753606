import math

import numpy as np
import pytest
import torch

from course_utils.flow import (
    drop_condition,
    euler_sample,
    flow_matching_loss,
    gaussian_mixture_velocity,
    guided_velocity,
    heun_sample,
    interpolate,
    sample_timesteps,
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
