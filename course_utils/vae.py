"""The tiny VAE: the Stable Diffusion autoencoder in miniature (Rombach et al., 2022).

A KL-regularised convolutional autoencoder that maps images (B, 3, H, W) in [-1, 1] to latents
(B, 4, H/4, W/4) and back. Diffusion runs in this latent space, 12x smaller than pixel space.
Latents returned by `encode` are multiplied by `scale_factor` so they have unit std, as in SD.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import load_model
from .config import SEEDS, stream_seed
from .data import float_images, render_shapes, to_float

VAE_CONFIG = {"channels": (16, 32, 64), "latent_channels": 4}  # the shipped VAE's architecture


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, plus a (1x1 projected) shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """(B, 3, H, W) -> mean and log-variance, each (B, 4, H/4, W/4)."""

    def __init__(self, channels=(32, 64, 96), latent_channels=4):
        super().__init__()
        c0, c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c0, 3, padding=1),
            ResBlock(c0, c0),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1),  # H/2
            ResBlock(c1, c1),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),  # H/4
            ResBlock(c2, c2),
            nn.GroupNorm(8, c2),
            nn.SiLU(),
            nn.Conv2d(c2, 2 * latent_channels, 3, padding=1),
        )

    def forward(self, x):
        mean, logvar = self.net(x).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)


class Decoder(nn.Module):
    """(B, 4, h, w) -> (B, 3, 4h, 4w)."""

    def __init__(self, channels=(32, 64, 96), latent_channels=4):
        super().__init__()
        c0, c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(latent_channels, c2, 3, padding=1),
            ResBlock(c2, c2),
            nn.Upsample(scale_factor=2, mode="nearest"),  # 2h
            nn.Conv2d(c2, c1, 3, padding=1),
            ResBlock(c1, c1),
            nn.Upsample(scale_factor=2, mode="nearest"),  # 4h
            nn.Conv2d(c1, c0, 3, padding=1),
            ResBlock(c0, c0),
            nn.GroupNorm(8, c0),
            nn.SiLU(),
            nn.Conv2d(c0, 3, 3, padding=1),
        )

    def forward(self, z):
        return self.net(z)


class VAE(nn.Module):
    """encode: images (B, 3, H, W) -> scaled latents (B, 4, H/4, W/4); decode: the way back."""

    def __init__(self, channels=(32, 64, 96), latent_channels=4, scale_factor: float = 1.0):
        super().__init__()
        self.channels, self.latent_channels = tuple(channels), latent_channels
        self.encoder = Encoder(channels, latent_channels)
        self.decoder = Decoder(channels, latent_channels)
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        return cls(**config)

    @property
    def config(self) -> dict:
        """What rebuilds this VAE, the fitted latent scale included."""
        return {"channels": self.channels, "latent_channels": self.latent_channels,
                "scale_factor": float(self.scale_factor)}

    def _check(self, images):
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 4 or images.shape[3] % 4:
            raise ValueError(
                f"VAE.encode expects images (B, 3, H, W) with H and W multiples of 4, got {tuple(images.shape)}."
            )

    def posterior(self, images):
        """Unscaled mean and log-variance of q(z | x)."""
        self._check(images)
        return self.encoder(images)

    @torch.no_grad()
    def encode(self, images, generator: torch.Generator = None, sample: bool = False):
        """images in [-1, 1] (or uint8) -> latents scaled to unit std (the posterior mean unless sample=True)."""
        mean, logvar = self.posterior(float_images(images))
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device="cpu").to(mean.device)
            mean = mean + (0.5 * logvar).exp() * noise
        return mean * self.scale_factor

    @torch.no_grad()
    def decode(self, latents):
        """Scaled latents (B, 4, h, w) -> images (B, 3, 4h, 4w), clamped to [-1, 1]."""
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or not latents.is_floating_point() \
                or latents.shape[1] != self.decoder.net[0].in_channels:
            got = (tuple(latents.shape), str(latents.dtype)) if isinstance(latents, torch.Tensor) else type(latents)
            raise ValueError(f"VAE.decode expects float latents (B, 4, h, w), got {got}.")
        if not torch.isfinite(latents).all():
            raise ValueError("latents must be finite, got NaN or inf (did the sampler or the training diverge?).")
        return self.decoder(latents / self.scale_factor).clamp(-1, 1)


def vae_loss(vae: VAE, images: torch.Tensor, kl_weight: float = 1e-4) -> tuple:
    """Reconstruction MSE + kl_weight * KL(q(z|x) || N(0, I)) per latent element; returns (loss, mse)."""
    mean, logvar = vae.posterior(images)
    z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    mse = F.mse_loss(vae.decoder(z), images)
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
    return mse + kl_weight * kl, mse


def psnr(images: torch.Tensor, recon: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1] (peak-to-peak 2), over the whole batch."""
    if not (isinstance(images, torch.Tensor) and isinstance(recon, torch.Tensor)) or images.shape != recon.shape:
        raise ValueError(f"images and recon must be tensors of one shape, got {getattr(images, 'shape', images)!s:.40} "
                         f"and {getattr(recon, 'shape', recon)!s:.40}.")
    mse = F.mse_loss(recon.float(), images.float()).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


@torch.no_grad()
def reconstruction_psnr(vae: VAE, n: int = 1000, size: int = 32, seed: int = SEEDS["vae_test"],
                        batch: int = 250) -> float:
    """PSNR of decode(encode(x)) on n fresh Shapes images (a seed the training never uses)."""
    images = to_float(render_shapes(n, seed=seed, size=size).images)
    recon = torch.cat([vae.decode(vae.encode(images[i : i + batch])) for i in range(0, n, batch)])
    return psnr(images, recon)


def load_vae(device="cpu") -> VAE:
    """The shipped VAE (data/vae.pt), sha256-verified, in eval mode."""
    return load_model("vae", device)


def check_training(steps: int, batch_size: int, lr: float, divisor: int) -> None:
    """The arguments of train_vae and train_judge: steps >= 1, a batch whose 64x64 part (batch_size // divisor) holds
    at least one image, and a positive finite lr."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < divisor:
        raise ValueError(f"batch_size must be an integer >= {divisor} (64x64 batches hold batch_size // {divisor}), "
                         f"got {batch_size!r}.")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive, finite learning rate, got {lr!r}.")


def train_vae(steps: int = 3000, batch_size: int = 32, lr: float = 2e-3, seed: int = SEEDS["vae_training"]) -> VAE:
    """Train the VAE on freshly generated Shapes images (32x32 and 64x64 mixed), then fit its scale."""
    check_training(steps, batch_size, lr, 4)
    torch.manual_seed(seed)
    vae = VAE(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    bar = tqdm(range(steps), desc="vae")
    for step in bar:
        size = 64 if step % 4 == 3 else 32  # some 64x64 batches, so borders and room are both seen
        n = batch_size // 4 if size == 64 else batch_size
        images = to_float(render_shapes(n, seed=stream_seed(seed, step), size=size).images)
        loss, mse = vae_loss(vae, images)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the VAE's training loss is not finite at step {step}; lower lr={lr:g}.")
            bar.set_postfix(psnr=f"{10 * math.log10(4 / max(mse.item(), 1e-12)):.1f}")
    vae.eval()
    with torch.no_grad():
        mean, _ = vae.posterior(to_float(render_shapes(2000, seed=seed + SEEDS["vae_scale"]).images))
    vae.scale_factor.fill_(1.0 / mean.std().item())
    return vae

