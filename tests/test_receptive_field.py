import math

import pytest
import torch
import torch.nn as nn

from course_utils.receptive_field import (
    Layer,
    build_stack,
    conv,
    effective_receptive_field,
    erf_std,
    layers_from_module,
    layers_to_see,
    pool,
    receptive_field,
    receptive_field_table,
    stack_layers,
)


def closed_form_rf(kernels, strides):
    """r = 1 + sum_l (k_l - 1) prod_{i<l} s_i, written independently of the package."""
    r, prod = 1, 1
    for k, s in zip(kernels, strides):
        r += (k - 1) * prod
        prod *= s
    return r


def support_side(grad: torch.Tensor) -> tuple:
    rows = grad.abs().sum(1).nonzero()
    cols = grad.abs().sum(0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


STACKS = {
    "three 3x3": [conv(3), conv(3), conv(3)],
    "5x5 then 3x3": [conv(5), conv(3)],
    "stride 2 conv": [conv(3), conv(3, stride=2, padding=1), conv(3), conv(3)],
    "dilated": [conv(3), conv(3, dilation=2), conv(3, dilation=4)],
    "avg pooling": [conv(3), pool(2, kind="avgpool"), conv(3), pool(2, kind="avgpool"), conv(3)],
    "pool 3 stride 2": [conv(3), pool(3, 2, kind="avgpool"), conv(5)],
}


def to_module(layers):
    """Layer specs as a single-channel torch stack with constant positive weights, built by hand."""
    modules = []
    for layer in layers:
        if layer.kind == "conv":
            c = nn.Conv2d(1, 1, layer.kernel, layer.stride, layer.padding, layer.dilation, bias=False)
            nn.init.constant_(c.weight, 0.1)
            modules.append(c)
        else:
            modules.append(nn.AvgPool2d(layer.kernel, layer.stride))
    return nn.Sequential(*modules)


def test_build_stack_matches_its_specs():
    layers = stack_layers(6, kernel=5, dilation=2, downsample_every=2)
    assert layers_from_module(build_stack(layers, nonlinear=True)) == layers
    assert [layer.kind for layer in layers].count("avgpool") == 2  # none after the last conv
    assert [layer.kind for layer in stack_layers(9, downsample_every=1, max_pools=3)].count("avgpool") == 3


@pytest.mark.parametrize("name", list(STACKS))
def test_gradient_support_of_a_positive_linear_stack_equals_the_analytic_field(name):
    layers = STACKS[name]
    expected = closed_form_rf([layer.effective_kernel for layer in layers], [layer.stride for layer in layers])
    assert receptive_field(layers) == expected
    model = to_module(layers).double()
    grad = effective_receptive_field(model, (1, 65, 65), input=torch.ones(1, 65, 65, dtype=torch.float64))
    assert support_side(grad) == (expected, expected)


def test_table_from_module_equals_table_from_specs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Sequential(nn.Conv2d(8, 8, 5, stride=2, padding=2), nn.GroupNorm(2, 8)),
                          nn.Conv2d(8, 8, 3, dilation=2, padding=2))
    specs = [conv(3), pool(2), conv(5, stride=2), conv(3, dilation=2)]
    assert layers_from_module(model) == specs
    assert receptive_field_table(model) == receptive_field_table(specs)


def test_jump_and_start_follow_the_strides_and_paddings():
    table = receptive_field_table([conv(3, padding=0), pool(2), conv(3, stride=2, padding=1)])
    assert [row["rf"] for row in table] == [3, 4, 8]
    assert [row["jump"] for row in table] == [1, 2, 4]
    assert [row["start"] for row in table] == [1.0, 1.5, 1.5]  # centre of the first unit's field


def test_maxpool_layers_count_like_any_window():
    assert receptive_field([conv(3), pool(2), conv(3), pool(2), conv(3)]) == closed_form_rf([3, 2, 3, 2, 3],
                                                                                            [1, 2, 1, 2, 1])


@pytest.mark.parametrize("bad", [dict(kernel=0), dict(stride=0), dict(dilation=0), dict(padding=-1),
                                 dict(kernel=2.5), dict(kind="upsample")])
def test_bad_specs_are_clear_errors(bad):
    with pytest.raises(ValueError, match="must be"):
        Layer(**bad)


def test_unsupported_modules_are_clear_errors():
    with pytest.raises(ValueError, match="cannot compute the receptive field through Upsample"):
        layers_from_module(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)))
    with pytest.raises(ValueError, match="Layer spec"):
        receptive_field_table([(3, 1)])


def test_layers_needed_to_see_the_latent_and_the_image():
    assert layers_to_see(8) == 4 and layers_to_see(32) == 16  # 1 + 2L >= size
    assert layers_to_see(32, downsample_every=2) < 8
    assert receptive_field([conv(3)] * layers_to_see(32)) >= 32 > receptive_field([conv(3)] * 15)


@pytest.mark.parametrize("depth", [1, 4, 9])
def test_erf_of_uniform_stack_is_a_box_convolution_with_variance_growing_linearly(depth):
    model = build_stack(stack_layers(depth), channels=1, positive=True).double()
    grad = effective_receptive_field(model, (3, 61, 61), input=torch.zeros(3, 61, 61, dtype=torch.float64))
    assert erf_std(grad) == pytest.approx(math.sqrt(depth * (3**2 - 1) / 12), rel=1e-6)
    assert support_side(grad) == (1 + 2 * depth,) * 2


def test_erf_is_much_smaller_than_the_theoretical_field_for_deep_random_stacks():
    model = build_stack(stack_layers(16), channels=8, nonlinear=True, seed=1)
    grad = effective_receptive_field(model, (3, 64, 64))
    theoretical = 1 + 2 * 16
    uniform_std = math.sqrt((theoretical**2 - 1) / 12)  # if every pixel of the field mattered equally
    assert support_side(grad)[0] <= theoretical
    assert erf_std(grad) < 0.5 * uniform_std


def test_erf_input_shape_errors():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        effective_receptive_field(build_stack(stack_layers(1)), (32, 32))
