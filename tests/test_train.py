import pytest
import torch
import torch.nn as nn

from course_utils.train import load_model, lr_factor, save_model, train, validation_loss


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
    history = train(model, x, y, steps=150, batch_size=64, lr=3e-3, val=(vx, vy), val_every=50)
    assert [s for s, _ in history.val_loss] == [50, 100, 150]
    assert len(history.train_loss) == 150 and history.steps == 150 and history.seconds > 0
    assert history.final_val_loss() < 0.6 * before
    assert history["val_loss"] is history.val_loss


def test_training_is_deterministic():
    x, y = toy_data()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ClassDenoiser()
        train(model, x, y, steps=20, batch_size=32, seed=3)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_ema_is_kept_and_lags_the_model():
    torch.manual_seed(0)
    x, y = toy_data()
    model = ClassDenoiser()
    history = train(model, x, y, steps=30, batch_size=32, ema_decay=0.9)
    ema = history.ema
    assert ema is not None and ema is not model
    assert not any(p.requires_grad for p in ema.parameters())
    diffs = [(a - b).abs().max().item() for a, b in zip(ema.parameters(), model.parameters())]
    assert max(diffs) > 0


def test_cfg_dropout_needs_a_null_condition():
    x, y = toy_data(64)
    with pytest.raises(ValueError, match="null condition"):
        train(ClassDenoiser(), x, y, steps=2, batch_size=8, cfg_dropout=0.1)
    train(ClassDenoiser(), x, y, steps=2, batch_size=8, cfg_dropout=0.5, null_cond=torch.tensor([3]))


def test_text_conditions_are_indexed_per_sample():
    class TextModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.EmbeddingBag(10, 8, mode="sum")
            self.lin = nn.Linear(8, 8)

        def forward(self, x, t, cond):
            ids, mask = cond
            assert ids.shape == mask.shape == (x.shape[0], 5)
            return self.lin(self.embed(ids * mask)).view_as(x)

    ids = torch.randint(1, 10, (40, 5))
    history = train(TextModel(), torch.randn(40, 2, 2, 2), (ids, ids > 2), steps=3, batch_size=8)
    assert len(history.train_loss) == 3


def test_cosine_schedule_warms_up_then_falls_to_zero():
    steps, warmup = 1000, 100
    factors = [lr_factor(s, steps, warmup, "cosine") for s in range(steps)]
    assert factors[0] == pytest.approx(0.01) and factors[warmup - 1] == pytest.approx(1.0)
    assert factors[warmup + (steps - warmup) // 2 - 1] == pytest.approx(0.5)
    assert factors[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[warmup - 1 :], factors[warmup:]))
    assert [lr_factor(s, steps, warmup, "constant") for s in (0, 99, 999)] == [0.01, 1.0, 1.0]


def test_sample_weights_decide_which_samples_are_drawn():
    class Recorder(ClassDenoiser):
        seen = []

        def forward(self, x, t, cond):
            self.seen.append(cond.clone())
            return super().forward(x, t, cond)

    x, y = toy_data()
    weights = (y == 2).float()  # only class 2 may be drawn
    train(Recorder(), x, y, steps=5, batch_size=32, sample_weights=weights)
    assert torch.cat(Recorder.seen).eq(2).all()


def test_bad_training_options_are_clear_errors():
    x, y = toy_data(64)
    with pytest.raises(ValueError, match="lr_decay must be one of"):
        train(ClassDenoiser(), x, y, steps=2, lr_decay="linear")
    with pytest.raises(ValueError, match=r"sample_weights must be \(64,\) non-negative"):
        train(ClassDenoiser(), x, y, steps=2, sample_weights=torch.ones(10))
    with pytest.raises(ValueError, match="non-negative"):
        train(ClassDenoiser(), x, y, steps=2, sample_weights=-torch.ones(64))


def test_callback_runs_after_every_validation():
    x, y = toy_data()
    calls = []
    train(ClassDenoiser(), x, y, steps=30, batch_size=32, val=(x[:64], y[:64]), val_every=10,
          callback=lambda step, history: calls.append((step, len(history.val_loss))))
    assert calls == [(10, 1), (20, 2), (30, 3)]


def test_checkpoint_round_trip(tmp_path):
    model = ClassDenoiser(width=16)
    digest = save_model(tmp_path / "toy.pt", model, model.config, step=5)
    loaded = load_model(tmp_path / "toy.pt", ClassDenoiser, sha256=digest)
    assert not loaded.training
    x, t, c = torch.randn(4, 2, 2, 2), torch.rand(4), torch.tensor([0, 1, 2, 3])
    assert torch.equal(loaded(x, t, c), model(x, t, c))
