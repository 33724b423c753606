"""Receptive fields of convolution stacks: the analytic arithmetic and the measured (effective) field.

Analytic (Araujo et al., 2019, "Computing receptive fields of CNNs"): per layer, with effective kernel
k' = d (k - 1) + 1, the field grows as r <- r + (k' - 1) j and the jump (input pixels between neighbouring
units) as j <- j s. Effective (Luo et al., 2016): |d y_centre / d x| is roughly Gaussian and much narrower.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn

KINDS = ("conv", "maxpool", "avgpool")
_ELEMENTWISE = (nn.ReLU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Identity,
                nn.BatchNorm2d, nn.GroupNorm, nn.Dropout)


@dataclass(frozen=True)
class Layer:
    """One spatial layer: a convolution or a pooling, square kernel."""

    kind: str = "conv"
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    padding: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"layer kind must be one of {KINDS}, got {self.kind!r}.")
        for name, low in (("kernel", 1), ("stride", 1), ("dilation", 1), ("padding", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r} in {self}.")

    @property
    def effective_kernel(self) -> int:
        return self.dilation * (self.kernel - 1) + 1


def conv(kernel=3, stride=1, dilation=1, padding=None) -> Layer:
    """A conv layer; padding defaults to 'same' for stride 1 (dilation * (kernel - 1) // 2)."""
    return Layer("conv", kernel, stride, dilation, dilation * (kernel - 1) // 2 if padding is None else padding)


def pool(kernel=2, stride=None, kind="maxpool") -> Layer:
    """A pooling layer (stride defaults to the kernel, as in torch)."""
    return Layer(kind, kernel, kernel if stride is None else stride, 1, 0)


def _pair(value) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"only square kernels, strides and paddings are supported, got {value}.")
        value = value[0]
    return value


def layers_from_module(module: nn.Module) -> list:
    """The spatial layers of an nn.Sequential (nested Sequentials too); elementwise layers are skipped."""
    layers = []
    for m in module.modules() if isinstance(module, nn.Sequential) else [module]:
        if isinstance(m, nn.Sequential):
            continue
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str):
                raise ValueError(f"{m}: give padding as a number, not {m.padding!r}.")
            layers.append(Layer("conv", _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation), _pair(m.padding)))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
            dilation = _pair(getattr(m, "dilation", 1))
            stride = _pair(m.stride or m.kernel_size)
            layers.append(Layer(kind, _pair(m.kernel_size), stride, dilation, _pair(m.padding)))
        elif not isinstance(m, _ELEMENTWISE):
            raise ValueError(f"cannot compute the receptive field through {type(m).__name__}; "
                             "supported: Conv2d, MaxPool2d, AvgPool2d and elementwise layers.")
    return layers


def receptive_field_table(layers) -> list:
    """Per layer: {"layer", "kernel", "stride", "dilation", "padding", "rf", "jump", "start"}.

    rf: side of the input region one unit sees; jump: input pixels between neighbouring units;
    start: input coordinate of the centre of the first unit's field (pixel centres at 0, 1, 2, ...).
    `layers` is a list of Layer specs or an nn.Sequential.
    """
    if isinstance(layers, nn.Module):
        layers = layers_from_module(layers)
    rf, jump, start, rows = 1, 1, 0.0, []
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise ValueError(f"layer {i} must be a Layer spec (use conv(...) or pool(...)), got {layer!r}.")
        k = layer.effective_kernel
        start += ((k - 1) / 2 - layer.padding) * jump
        rf += (k - 1) * jump
        jump *= layer.stride
        rows.append({"layer": f"{i + 1}: {layer.kind} {layer.kernel}x{layer.kernel}", "kernel": layer.kernel,
                     "stride": layer.stride, "dilation": layer.dilation, "padding": layer.padding,
                     "rf": rf, "jump": jump, "start": start})
    return rows


def receptive_field(layers) -> int:
    """Side of the receptive field of the last layer's units (1 for no layers)."""
    table = receptive_field_table(layers)
    return table[-1]["rf"] if table else 1


def layers_to_see(target: int, kernel: int = 3, downsample_every: int = 0) -> int:
    """Fewest conv layers (stride 1) before one unit sees `target` pixels, with an optional 2x2 pool
    after every `downsample_every` convs (0: never)."""
    layers, n_conv = [], 0
    while receptive_field(layers) < target:
        layers.append(conv(kernel))
        n_conv += 1
        if downsample_every and n_conv % downsample_every == 0:
            layers.append(pool(2))
    return n_conv


def effective_receptive_field(model: nn.Module, input_shape: tuple, input: torch.Tensor = None) -> torch.Tensor:
    """|d y_centre / d x| summed over input channels: (H, W) map of how much each pixel moves the
    centre output unit (all output channels summed). input_shape is (C, H, W); input defaults to
    a standard normal sample, which matters only for non-linear models."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}.")
    x = (torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)) if input is None
         else input.reshape(1, *input_shape).clone())
    x.requires_grad_(True)
    out = model(x)
    if out.ndim != 4:
        raise ValueError(f"the model must return a feature map (1, C, h, w), got shape {tuple(out.shape)}.")
    h, w = out.shape[-2:]
    out[0, :, h // 2, w // 2].sum().backward()
    return x.grad[0].abs().sum(0)


def erf_std(grad_map: torch.Tensor) -> float:
    """Spread of an effective receptive field: the standard deviation (in pixels) of the normalised
    map along one axis, averaged over the two axes."""
    p = grad_map / grad_map.sum()
    h, w = p.shape
    stds = []
    for marginal, n in ((p.sum(1), h), (p.sum(0), w)):
        coords = torch.arange(n, dtype=p.dtype)
        mean = (marginal * coords).sum()
        stds.append(((marginal * (coords - mean) ** 2).sum()).sqrt())
    return float(sum(stds) / 2)


def stack_layers(depth: int, kernel: int = 3, dilation: int = 1, downsample_every: int = 0,
                 max_pools: int = None) -> list:
    """`depth` same-padded convs with a 2x2 pool after every `downsample_every` of them (0: never),
    at most `max_pools` pools (so a small image is not pooled away), none after the last conv."""
    layers, pools = [], 0
    for i in range(depth):
        layers.append(conv(kernel, dilation=dilation))
        room = max_pools is None or pools < max_pools
        if downsample_every and (i + 1) % downsample_every == 0 and i < depth - 1 and room:
            layers.append(pool(2, kind="avgpool"))
            pools += 1
    return layers


def build_stack(layers: list, channels: int = 8, positive: bool = False, nonlinear: bool = False,
                seed: int = 0) -> nn.Sequential:
    """A torch model of Layer specs, from 3 input channels to `channels`.

    positive: uniform positive weights and no bias (a linear stack whose gradient support is exactly the
    receptive field); otherwise random weights (seeded), zero bias. nonlinear: ReLU after each conv.
    """
    gen = torch.Generator().manual_seed(seed)
    modules, c_in = [], 3
    for layer in layers:
        if layer.kind != "conv":
            pool_cls = nn.MaxPool2d if layer.kind == "maxpool" else nn.AvgPool2d
            modules.append(pool_cls(layer.kernel, layer.stride, layer.padding))
            continue
        m = nn.Conv2d(c_in, channels, layer.kernel, layer.stride, layer.padding, layer.dilation, bias=not positive)
        fan_in = c_in * layer.kernel**2
        with torch.no_grad():
            if positive:
                m.weight.fill_(1.0 / fan_in)
            else:
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                m.bias.zero_()
        modules += [m, nn.ReLU()] if nonlinear else [m]
        c_in = channels
    if nonlinear:
        modules.pop()  # no ReLU after the last conv
    return nn.Sequential(*modules)
