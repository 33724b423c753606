"""Reference solutions to lesson 06's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 06.1
# qk-norm bounds |q.k| / sqrt(d) by sqrt(d) times two learned gains; without it the projections grow freely.
logits_grow_more = "without"


# %% exercise 06.2
def unread_parameters(model):
    """How many parameters of model.blocks[-1] (an MMDiT's last block) cannot change the model's output."""
    block, dim = model.blocks[-1], model.config.dim
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    text_queries = dim * dim + dim + count(block.attn.q_norm_c)  # the first third of qkv_c, and their qk-norm gains
    after_attention = count(block.attn.proj_c) + count(block.mlp_c)  # the text stream's output and its MLP
    modulation = 4 * (dim * dim + dim)  # modulation_c's attention gate and the MLP's shift, scale, gate (4 of 6)
    return text_queries + after_attention + modulation


# %% exercise 06.3
def word_share(maps, word, patches):
    """maps: JointAttentionMaps (weights (B, heads, N + M, N + M), grid (h, w)); word: index of a caption word
    (0 = first); patches: (h, w) bool -> (B,) share of the word's attention, mean over heads, on those patches."""
    n = maps.n_image
    row = maps.weights.mean(1)[:, n + 1 + word, :n]  # (B, N): the word's query row; the begin token sits at n
    return row[:, patches.flatten()].sum(-1)


# %% exercise 06.4
from course_utils.data import caption_for

INVERSE = {"above": "below", "below": "above", "to the left of": "to the right of", "to the right of": "to the left of"}


def swap_caption(record):
    """A two-object record's caption with the second object named first and the relation inverted."""
    first, second = record["objects"]
    return caption_for({**record, "relation": INVERSE[record["relation"]], "objects": [second, first]})


# %% exercise 06.5
def tied_saving(dim, heads, mlp_ratio, qk_norm):
    """Parameters of one MMDiT block beyond those of the same block with its text weights tied to the image's."""
    hidden = int(dim * mlp_ratio)
    qkv = 3 * dim * dim + 3 * dim  # qkv_c
    proj = dim * dim + dim  # proj_c
    mlp = dim * hidden + hidden + hidden * dim + dim  # mlp_c
    modulation = 6 * dim * dim + 6 * dim  # modulation_c: shift, scale, gate for attention and MLP
    norms = 2 * (dim // heads) if qk_norm else 0  # q_norm_c, k_norm_c: one gain per head channel
    return qkv + proj + mlp + modulation + norms


# %% exercise 06.6
def joint_block_macs(n, m, dim, mlp_ratio):
    """Multiply-accumulates of one MMDiT block on one sample: n image tokens, m text tokens, width dim."""
    d = dim
    streams = sum(4 * t * d * d + int(2 * mlp_ratio * t * d * d) for t in (n, m))  # q, k, v, out and MLP per stream
    attention = 2 * (n + m) ** 2 * d  # joint scores and weighted sum over all n + m tokens
    modulation = 2 * 6 * d * d  # each stream's D -> 6D modulation
    return streams + attention + modulation
