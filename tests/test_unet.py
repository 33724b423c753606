import pytest
import torch

from course_utils.data import Tokenizer
from course_utils.receptive_field import effective_receptive_field
from course_utils.unet import UNet, UNetConfig, unet_small

TOK = Tokenizer()


def cond_for(n, caption="a small red circle in the top left"):
    return TOK.encode([caption] * n)


def randomize_output(model, seed=0):
    """The output layer starts at zero; give it weights so gradients and outputs flow."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.conv_out.weight.copy_(0.1 * torch.randn(model.conv_out.weight.shape, generator=gen))
    return model


CONFIGS = [dict(channels=(32, 64), blocks=1, attention=False), dict(channels=(32, 64, 64), blocks=2),
           dict(channels=(32, 32, 64), blocks=1, skip=False), dict(channels=(32,), blocks=1, attention=True)]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("size", [8, 16])
def test_output_has_the_input_shape_and_is_zero_at_init(config, size):
    model = unet_small(**config)
    x = torch.randn(3, 4, size, size)
    v = model(x, torch.rand(3), cond_for(3))
    assert v.shape == x.shape and torch.equal(v, torch.zeros_like(v))


def test_input_not_divisible_by_the_downsampling_is_a_clear_error():
    model = unet_small(channels=(32, 64, 64, 64))
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.randn(1, 4, 12, 12), torch.rand(1), cond_for(1))


def test_receptive_field_covers_the_whole_latent():
    class AtFixedTime(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x):
            return self.unet(x, torch.full((1,), 0.5), cond_for(1))

    for config in [UNetConfig(channels=(32, 64, 64), attention=False), unet_small().config]:
        model = randomize_output(UNet(config))
        grad = effective_receptive_field(AtFixedTime(model), (4, 8, 8))
        assert (grad > 0).all(), f"{config}: some latent pixels do not reach the centre output"


def _grad_from_encoder_around_bottleneck(model):
    """Gradient of the output w.r.t. the first encoder features, with the bottleneck path cut."""
    captured = {}

    def keep(module, args, out):
        out.retain_grad()
        captured["features"] = out

    model.conv_in.register_forward_hook(keep)
    model.mid1.register_forward_pre_hook(lambda module, args: (args[0].detach(), args[1]))
    model(torch.randn(2, 4, 8, 8), torch.rand(2), cond_for(2)).square().sum().backward()
    return captured["features"].grad


def test_without_skips_the_bottleneck_is_the_only_path():
    with_skips = _grad_from_encoder_around_bottleneck(randomize_output(unet_small(channels=(32, 64), skip=True)))
    without = _grad_from_encoder_around_bottleneck(randomize_output(unet_small(channels=(32, 64), skip=False)))
    assert with_skips is not None and with_skips.abs().sum() > 0
    assert without is None or without.abs().sum() == 0


def test_output_depends_on_time_and_caption():
    model = randomize_output(unet_small())
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.3, 0.3])
    a = model(x, t, cond_for(2, "a small red circle in the top left"))
    b = model(x, t, cond_for(2, "a large blue square in the center"))
    c = model(x, torch.tensor([0.9, 0.9]), cond_for(2, "a small red circle in the top left"))
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_construction_and_forward_are_deterministic():
    torch.manual_seed(0)
    a = randomize_output(unet_small())
    torch.manual_seed(0)
    b = randomize_output(unet_small())
    x, t, c = torch.randn(2, 4, 8, 8), torch.rand(2), cond_for(2)
    assert torch.equal(a(x, t, c), b(x, t, c))


def test_null_condition_is_accepted():
    model = unet_small()
    ids, mask = model.null_condition()
    assert model(torch.randn(1, 4, 8, 8), torch.rand(1), (ids, mask)).shape == (1, 4, 8, 8)
