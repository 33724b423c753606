"""Lesson 06's explorer: joint attention between image patches and caption words in an MMDiT (Esser et al., 2024).

One softmax runs over both modalities, so patches read words and words read patches; the maps come from the model's
own `attention_maps` at one step of a guided sampling run.
"""

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ..data import Tokenizer
from ..flow import clean_estimate, guided_velocity, sample_trajectory, time_grid
from ..vae import load_vae
from .base import Explorer, check_index, int_slider

MMDIT_CAPTIONS = ("a red circle above a blue square", "a yellow square to the left of a purple triangle",
                  "a large cyan circle in the top left", "two small green diamonds")


@torch.no_grad()
def mmdit_attention_view(model, vae, caption: str = MMDIT_CAPTIONS[0], word: int = 1, step: int = 5, layer: int = 0,
                         steps: int = 10, cfg_scale: float = 2.0, seed: int = 0, trajectory=None) -> dict:
    """What the MMDiT attention explorer shows: sample the caption with `steps` Euler steps, stop at `step`, and
    read the joint attention of `layer` (mean over heads) between the image patches and caption word `word`
    (0 is the first word; the explorer clamps its slider to the caption's last word); `vae` decodes the model's
    prediction of the clean latent.
    trajectory: the caption's sample_trajectory (steps + 1, 1, C, s, s) with these steps, cfg_scale and seed,
    if already computed.

    Returns {"words", "word", "image" (H, W, 3): the decoded prediction of the clean image at that step,
    "image_to_word" (h, w): the share of each patch's attention that goes to the word, "word_to_image" (h, w):
    how the word's own attention spreads over the patches, "text_share": the patches' attention on all text,
    "t", "text"}.
    """
    if not hasattr(model, "attention_maps"):
        raise ValueError(f"model must be an MMDiT (it reads joint attention), got {type(model).__name__}.")
    if not isinstance(caption, str):
        raise ValueError(f"caption must be one caption string, got {caption!r:.60}.")
    tokenizer = Tokenizer(model.config.max_len)
    words = tokenizer.words(caption)  # raises ValueError for an unknown word
    check_index("word", word, len(words))
    check_index("step", step, steps + 1)
    check_index("layer", layer, len(model.blocks))
    device = next(model.parameters()).device
    cond = tuple(c.to(device) for c in tokenizer.encode([caption]))  # (ids, mask), each (1, L)
    if trajectory is None:
        trajectory = sample_trajectory(model, [caption], steps, cfg_scale, seed)
    x = trajectory[step].to(device)  # (1, C, s, s)
    t = time_grid(steps, x.device)[step][None]  # (1,)
    maps = model.attention_maps(x, t, cond, layer)  # of the conditional pass model(x, t, cond)
    image_to_word = maps.patches_to_word(word)[0].float().cpu()  # (h, w)
    word_to_image = maps.word_to_patches(word)[0].float().cpu()  # (h, w)
    text_share = maps.text_share()[0].item()
    v = guided_velocity(model, x, t, cond, model.null_condition(), cfg_scale)  # (1, C, s, s)
    clean = clean_estimate(x, t, v)  # the prediction of the data latent at this step
    decoded = vae.decode(clean.float().to(next(vae.parameters()).device))[0].cpu()  # (3, H, W)
    image = decoded.permute(1, 2, 0).add(1).div(2).numpy()  # (H, W, 3) in [0, 1]
    peak = divmod(int(image_to_word.argmax()), maps.grid[1])
    text = (f"caption '{caption}', word {word} '{words[word]}', step {step} of {steps} (t = {t.item():.2f}), "
            f"layer {layer}\n"
            f"image patches give {text_share:.1%} of their attention to the caption tokens, "
            f"{image_to_word.mean():.1%} to '{words[word]}' (most: patch row {peak[0]}, column {peak[1]})\n"
            f"'{words[word]}' gives {word_to_image.sum():.1%} of its attention to the image patches")
    return {"words": words, "word": word, "image": image, "image_to_word": image_to_word.numpy(),
            "word_to_image": word_to_image.numpy(), "text_share": text_share, "t": t.item(), "text": text}


def draw_mmdit_attention(view: dict, fig: Figure):
    """(a) the predicted image, (b) patches -> word attention over it, (c) word -> patches attention over it."""
    axes = fig.subplots(1, 3)
    image, side = view["image"], view["image"].shape[0]
    word = view["words"][view["word"]]
    axes[0].imshow(image)
    axes[0].set_title(f"(a) predicted image at t = {view['t']:.2f}")
    for ax, key, title in ((axes[1], "image_to_word", f"(b) patches attend to '{word}'"),
                           (axes[2], "word_to_image", f"(c) '{word}' attends to patches")):
        ax.imshow(image)
        ax.imshow(view[key], cmap="magma", alpha=0.6, extent=(0, side, side, 0), interpolation="nearest")
        ax.set_title(title)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()


def mmdit_attention_explorer(model, caption: str = MMDIT_CAPTIONS[0], steps: int = 10, cfg_scale: float = 2.0,
                             seed: int = 0, vae=None) -> Explorer:
    """A caption (pick one or type one), sliders for the word, the denoising step and the layer.

    Sampling runs `steps` Euler steps with guidance `cfg_scale` from noise drawn with `seed`, once per caption: the
    word, step and layer sliders reuse its trajectory. `vae` (default: the shipped VAE, loaded here once) decodes
    the predictions. A typed caption with an unknown word shows the error and keeps the last picture.
    """
    model = model.eval()
    vae = load_vae() if vae is None else vae
    controls = {
        "caption": widgets.Combobox(options=MMDIT_CAPTIONS, value=caption, description="caption",
                                    ensure_option=False, continuous_update=False),
        "word": int_slider("word", 1, 0, model.config.max_len - 1),
        "step": int_slider("step", steps // 2, 0, steps - 1),
        "layer": int_slider("layer", 0, 0, len(model.blocks) - 1),
    }
    last, trajectories = {}, {}  # caption -> (steps + 1, 1, C, s, s): one sampling run per caption

    def compute(caption, **values):
        try:
            if caption not in trajectories:
                trajectories[caption] = sample_trajectory(model, [caption], steps, cfg_scale, seed)
            values["word"] = min(values["word"], len(Tokenizer(model.config.max_len).words(caption)) - 1)  # slider
            last["view"] = mmdit_attention_view(model, vae, caption, steps=steps, cfg_scale=cfg_scale, seed=seed,
                                                trajectory=trajectories[caption], **values)
        except ValueError as error:  # a typed caption with an unknown word: say so, keep the last picture
            if "view" not in last:
                raise
            return {**last["view"], "text": str(error)}
        return last["view"]

    return Explorer(compute, draw_mmdit_attention, controls, figsize=(11, 3.8))
