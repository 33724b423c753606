
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

import course_utils.train as train_mod
from course_utils.data import Tokenizer
from course_utils.mmdit import mmdit_small
from course_utils.profiling import count_operators
from course_utils.train import (
    LESSON_RUN,
    MMDIT_RUN,
    SHIPPED_RUN,
    TrainConfig,
    lr_factor,
    scale_batch,
    train,
    validation_loss,
)


class ClassDenoiser(nn.Module):
    """A tiny conditional model on (B, 2, 2, 2) 'latents': enough to learn class-dependent means."""

    def __init__(self, classes: int = 3, width: int = 32):
        super().__init__()
        self.config = {"classes": classes, "width": width}
        self.embed = nn.Embedding(classes + 1, width)
        self.net = nn.Sequential(nn.Linear(8 + 1 + width, width), nn.SiLU(), nn.Linear(width, 8))

    def forward(self, x, t, cond):
        h = torch.cat([x.flatten(1), t[:, None], self.embed(cond)], dim=1)
        return self.net(h).view_as(x)


def toy_data(n=600, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=gen)
    centres = torch.tensor([-2.0, 0.0, 2.0])[labels].view(-1, 1, 1, 1)
    return centres + 0.1 * torch.randn(n, 2, 2, 2, generator=gen), labels


def test_training_lowers_the_validation_loss_and_records_history():
    torch.manual_seed(0)
    x, y = toy_data()
    vx, vy = toy_data(200, seed=1)
    model = ClassDenoiser()
    before = validation_loss(model, vx, vy)
    config = TrainConfig(steps=150, batch_size=64, lr=3e-3, val_every=50)
    history = train(model, x, y, config=config, val=(vx, vy))
    assert [s for s, _ in history.val_loss] == [50, 100, 150]
    assert [s for s, _ in history.train_loss] == list(range(1, 151)) and history.steps == 150 and history.seconds > 0
    assert history.final_val_loss() < 0.6 * before


def test_training_is_deterministic():
    x, y = toy_data()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ClassDenoiser()
        train(model, x, y, config=TrainConfig(steps=20, batch_size=32, seed=3))
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_ema_is_the_hand_computed_moving_average_of_the_weights():
    torch.manual_seed(0)
    x, y = toy_data()
    model, decay = ClassDenoiser(), 0.9
    expected = [p.detach().clone() for p in model.parameters()]  # the EMA starts at the initial weights

    def average(step, history):  # validation every step: fold in the weights after this step
        for e, p in zip(expected, model.parameters()):
            e.mul_(decay).add_((1 - decay) * p.detach())

    history = train(model, x, y, config=TrainConfig(steps=12, batch_size=32, ema_decay=decay, val_every=1),
                    val=(x[:8], y[:8]), callback=average)
    assert history.ema is not model and not any(p.requires_grad for p in history.ema.parameters())
    for e, p_ema, p in zip(expected, history.ema.parameters(), model.parameters()):
        assert torch.allclose(p_ema, e, atol=1e-6)
        assert not torch.allclose(p_ema, p, atol=1e-4)  # it lags the model


def test_cfg_dropout_needs_a_null_condition():
    x, y = toy_data(64)
    config = TrainConfig(steps=2, batch_size=8, cfg_dropout=0.5)
    with pytest.raises(ValueError, match="null condition"):
        train(ClassDenoiser(), x, y, config=config)
    train(ClassDenoiser(), x, y, config=config, null_cond=torch.tensor([3]))


def test_text_conditions_travel_with_their_latents(monkeypatch):
    """Sample i's latent is all i and its caption ids start with i: every drawn pair must agree."""
    seen = []

    def recording_loss(model, x1, cond, **kwargs):
        seen.append((x1[:, 0, 0, 0].clone(), cond[0][:, 0].clone(), cond[1].clone()))
        return real_loss(model, x1, cond, **kwargs)

    real_loss = train_mod.flow_matching_loss
    monkeypatch.setattr(train_mod, "flow_matching_loss", recording_loss)
    n = 40
    latents = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 2, 2, 2).contiguous()
    ids = torch.arange(n)[:, None].expand(n, 5).contiguous()
    mask = ids % 3 == 0  # a per-sample mask pattern
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 8), nn.Unflatten(1, (2, 2, 2)))
    train(lambda_model(model), latents, (ids, mask), config=TrainConfig(steps=5, batch_size=8))
    for x_first, id_first, drawn_mask in seen:
        assert torch.equal(x_first.long(), id_first)
        assert torch.equal(drawn_mask, (id_first % 3 == 0)[:, None].expand(-1, 5))


def lambda_model(net):
    """A model on the contract model(x, t, cond) that ignores t and cond."""

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t, cond):
            return self.net(x)

    return Wrapped()


def test_cosine_schedule_warms_up_then_falls_to_zero():
    steps, warmup = 1000, 100
    factors = [lr_factor(s, steps, warmup, "cosine") for s in range(steps)]
    assert factors[0] == pytest.approx(0.01) and factors[warmup - 1] == pytest.approx(1.0)
    assert factors[warmup + (steps - warmup) // 2 - 1] == pytest.approx(0.5)
    assert factors[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[warmup - 1 :], factors[warmup:]))
    assert [lr_factor(s, steps, warmup, "constant") for s in (0, 99, 999)] == [0.01, 1.0, 1.0]


def test_samples_are_drawn_as_often_as_their_weights_say(monkeypatch):
    drawn = []

    def recording_loss(model, x1, cond, **kwargs):
        drawn.append(cond.clone())
        return real_loss(model, x1, cond, **kwargs)

    real_loss = train_mod.flow_matching_loss
    monkeypatch.setattr(train_mod, "flow_matching_loss", recording_loss)
    x, y = toy_data(300)
    weights = torch.tensor([1.0, 2.5, 0.0])[y]  # class 1 drawn 2.5x as often as class 0, class 2 never
    train(ClassDenoiser(), x, y, config=TrainConfig(steps=100, batch_size=64), sample_weights=weights)
    counts = torch.bincount(torch.cat(drawn), minlength=3).float()
    share = counts / counts.sum()
    expected = torch.stack([weights[y == k].sum() for k in range(3)]) / weights.sum()
    assert counts[2] == 0 and torch.allclose(share, expected, atol=0.02), (share, expected)


def test_bad_training_options_are_clear_errors():
    x, y = toy_data(64)
    with pytest.raises(ValueError, match="lr_decay must be one of"):
        TrainConfig(steps=2, lr_decay="linear")
    for bad in ({"steps": -5}, {"steps": 0}, {"batch_size": 0}, {"steps": 2.5}):
        with pytest.raises(ValueError, match=f"TrainConfig.{next(iter(bad))} must be an integer"):
            TrainConfig(**{"steps": 2, **bad})
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        TrainConfig(steps=2, ema_decay=1.5)
    with pytest.raises(ValueError, match="cfg_dropout must be in"):
        TrainConfig(steps=2, cfg_dropout=2.0)
    config = TrainConfig(steps=2)
    with pytest.raises(ValueError, match=r"sample_weights must be \(64,\) non-negative"):
        train(ClassDenoiser(), x, y, config=config, sample_weights=torch.ones(10))
    with pytest.raises(ValueError, match="non-negative"):
        train(ClassDenoiser(), x, y, config=config, sample_weights=-torch.ones(64))
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        train(ClassDenoiser(), x, y, config={"steps": 2})


def test_presets_are_the_runs_the_lessons_and_shipped_models_share():
    assert LESSON_RUN.cfg_dropout == SHIPPED_RUN.cfg_dropout == 0.1
    assert SHIPPED_RUN.ema_decay == 0.999 and LESSON_RUN.ema_decay is None
    assert replace(LESSON_RUN, steps=7).steps == 7 and LESSON_RUN.steps == 500  # presets are frozen


def test_callback_runs_after_every_validation():
    x, y = toy_data()
    calls = []
    train(ClassDenoiser(), x, y, config=TrainConfig(steps=30, batch_size=32, val_every=10), val=(x[:64], y[:64]),
          callback=lambda step, history: calls.append((step, len(history.val_loss))))
    assert calls == [(10, 1), (20, 2), (30, 3)]


def test_a_cut_off_run_resumed_from_its_snapshot_gives_the_same_weights_bit_exact(tmp_path):
    x, y = toy_data()
    config = TrainConfig(steps=4, batch_size=32, ema_decay=0.9, cfg_dropout=0.3, val_every=2, lr_decay="cosine",
                         warmup=2)
    null = torch.tensor([3])
    torch.manual_seed(0)
    whole = ClassDenoiser()
    whole_history = train(whole, x, y, config=config, val=(x[:32], y[:32]), null_cond=null)

    def cut_off(step, history):
        raise KeyboardInterrupt  # the session ends right after the snapshot of step 2

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(ClassDenoiser(), x, y, config=config, val=(x[:32], y[:32]), null_cond=null, callback=cut_off,
              snapshot=tmp_path / "snapshot.pt")
    torch.manual_seed(1)  # a fresh process: other initial weights, which the snapshot replaces
    resumed = ClassDenoiser()
    history = train(resumed, x, y, config=config, val=(x[:32], y[:32]), null_cond=null,
                    resume=tmp_path / "snapshot.pt", snapshot=tmp_path / "snapshot.pt")
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(whole_history.ema.state_dict().values(), history.ema.state_dict().values()):
        assert torch.equal(a, b)
    assert history.train_loss == whole_history.train_loss and history.val_loss == whole_history.val_loss
    with pytest.raises(ValueError, match="another TrainConfig"):
        train(ClassDenoiser(), x, y, config=replace(config, lr=0.1), null_cond=null, resume=tmp_path / "snapshot.pt")


def test_scale_batch_follows_the_square_root_rule():
    run = scale_batch(SHIPPED_RUN, 4 * SHIPPED_RUN.batch_size)
    assert run.batch_size == 512 and run.lr == pytest.approx(2 * SHIPPED_RUN.lr) and run.steps == SHIPPED_RUN.steps


def test_the_mmdit_recipe_step_dispatches_few_operators_and_never_waits_for_the_device():
    """Counted as a GPU would launch them: operators per step (views excluded) and host syncs outside logging."""
    torch.manual_seed(0)
    n = 64
    latents = torch.randn(n, 4, 8, 8)
    captions = ["a red circle above a blue square", "two small red circles"] * (n // 2)
    ids, mask = Tokenizer().encode(captions)
    weights = torch.tensor([1.0, 2.5])[torch.arange(n) % 2]

    def run(steps):
        model = mmdit_small()
        config = replace(MMDIT_RUN, steps=steps, batch_size=8, val_every=1000)  # no validation, no logging step
        return count_operators(lambda: train(model, latents, (ids, mask), config=config, sample_weights=weights))

    two, four = run(2), run(4)
    per_step = {op: (four[op] - two[op]) / 2 for op in four}
    assert per_step.get("aten._local_scalar_dense", 0) == 0, "a training step waited for the device"
    assert sum(per_step.values()) <= 1000, sorted(per_step.items(), key=lambda kv: -kv[1])[:15]


def test_bad_training_data_is_refused_before_the_first_step():
    x, y = toy_data(64)
    config = TrainConfig(steps=2, batch_size=8)
    nan = x.clone()
    nan[5, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="latents must be non-empty and finite"):
        train(ClassDenoiser(), nan, y, config=config)
    with pytest.raises(ValueError, match="cond must hold one condition per latent: 64 latents in latents, got 70"):
        train(ClassDenoiser(), x, torch.zeros(70, dtype=torch.long), config=config)
    with pytest.raises(ValueError, match=r"val\[1\] must hold one condition per latent"):
        train(ClassDenoiser(), x, y, config=config, val=(x[:10], y[:9]))
    with pytest.raises(ValueError, match="latents must be a float tensor"):
        train(ClassDenoiser(), (x * 100).long(), y, config=config)
    with pytest.raises(ValueError, match="positive sum"):
        train(ClassDenoiser(), x, y, config=config, sample_weights=torch.zeros(64))


def test_a_diverging_run_stops_within_one_logging_interval_and_keeps_its_last_good_snapshot(tmp_path):
    x, y = toy_data(64)
    torch.manual_seed(0)
    good = TrainConfig(steps=4, batch_size=8, val_every=2)
    train(ClassDenoiser(), x, y, config=good, snapshot=tmp_path / "snapshot.pt")
    before = (tmp_path / "snapshot.pt").read_bytes()
    model = ClassDenoiser()
    with torch.no_grad():
        model.net[0].weight.fill_(float("inf"))  # the first forward pass gives a NaN loss
    with pytest.raises(FloatingPointError, match="not finite by step 20"):
        train(model, x, y, config=TrainConfig(steps=100, batch_size=8, val_every=50), snapshot=tmp_path / "snapshot.pt")
    assert (tmp_path / "snapshot.pt").read_bytes() == before


def test_validation_loss_refuses_mismatched_or_bad_arguments():
    x, y = toy_data(32)
    with pytest.raises(ValueError, match="cond must hold one condition per latent: 32 latents in latents, got 31"):
        validation_loss(ClassDenoiser(), x, y[:31])
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        validation_loss(ClassDenoiser(), x, y, batch_size=0)
