"""The interactive explorers, one module per lesson: a pure `*_view` computes what to draw from the slider values,
a `draw_*` draws it on one matplotlib figure, and `*_explorer` wires sliders to both through `Explorer`.

Views read no files and install no hooks: each factory loads what its view needs (the VAE, an example latent) once.
"""

from .adaln import ADALN_CAPTIONS, adaln_explorer, adaln_view
from .base import Explorer, int_slider
from .mmdit_attention import MMDIT_CAPTIONS, mmdit_attention_explorer, mmdit_attention_view
from .patches import patch_explorer, patch_view
from .receptive_field import receptive_field_explorer, receptive_field_view
from .rope import rope_1d_explorer, rope_1d_view, rope_2d_explorer, rope_2d_view

__all__ = [
    "ADALN_CAPTIONS",
    "MMDIT_CAPTIONS",
    "Explorer",
    "adaln_explorer",
    "adaln_view",
    "int_slider",
    "mmdit_attention_explorer",
    "mmdit_attention_view",
    "patch_explorer",
    "patch_view",
    "receptive_field_explorer",
    "receptive_field_view",
    "rope_1d_explorer",
    "rope_1d_view",
    "rope_2d_explorer",
    "rope_2d_view",
]
