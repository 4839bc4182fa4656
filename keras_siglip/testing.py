"""Helpers to build tiny models with non-trivial random weights for conformance checks."""

import math

import numpy as np

from keras_siglip.builders import build_text_tower, build_vision_tower
from keras_siglip.convert.big_vision import assign_tree
from keras_siglip.convert.names import tree_entries
from keras_siglip.models import SigLIP

# Small configurations that exercise the awkward cases: non-square images,
# leftover pixels dropped by VALID patching, head widths that are not powers
# of two, odd widths, a text head wider than the text tower (g-opt style).
TINY_CONFIGS = {
    "fixture_like": dict(
        vision=dict(image_size=(32, 24), patch_size=4, width=48, depth=2, mlp_dim=96, num_heads=3),
        text=dict(vocabulary_size=101, sequence_length=16, width=48, depth=2, mlp_dim=96, num_heads=3),
    ),
    "odd_nonsquare": dict(
        vision=dict(image_size=(30, 17), patch_size=4, width=30, depth=2, mlp_dim=37, num_heads=5),
        text=dict(vocabulary_size=99, sequence_length=9, width=30, depth=1, mlp_dim=41, num_heads=6),
    ),
    "asymmetric_text": dict(
        vision=dict(image_size=(18, 30), patch_size=6, width=42, depth=1, mlp_dim=50, num_heads=7),
        text=dict(vocabulary_size=64, sequence_length=7, width=28, depth=2, mlp_dim=33, num_heads=4,
                  embed_dim=42),
    ),
    "no_text_head": dict(
        vision=dict(image_size=(20, 20), patch_size=5, width=24, depth=1, mlp_dim=36, num_heads=2),
        text=dict(vocabulary_size=50, sequence_length=5, width=24, depth=1, mlp_dim=20, num_heads=3,
                  use_head=False),
    ),
}


def build_tiny(name, seed=0, **model_kwargs):
    """A `SigLIP` of the named tiny config with weights from `randomize_weights`."""
    return _build(False, TINY_CONFIGS[name], f"tiny_{name}", seed, model_kwargs)


def _build(naflex, config, name, seed, model_kwargs):
    vision = build_vision_tower(naflex, config["vision"])
    model = SigLIP(vision, build_text_tower(config["text"]), name=name, **model_kwargs)
    randomize_weights(model, seed)
    return model


def random_values(shapes, seed=0, kernel_std=1.0):
    """Non-trivial random float32 values for `(big_vision name, shape)` pairs, drawn in order.

    LayerNorm scales are `1 + N(0, 0.1)`, biases `N(0, 0.1)`, kernels
    `N(0, kernel_std^2)` divided by sqrt(fan-in) so activations stay O(1);
    embeddings and the MAP probe `N(0, 1)`; `t = log 10` and `b = -2`, both
    perturbed (so the loss is not saturated).
    """
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes:
        shape = tuple(shape)
        leaf = name.rsplit("/", 1)[-1]
        if leaf == "scale":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif leaf == "bias":
            value = 0.1 * rng.standard_normal(shape)
        elif name == "t":
            value = math.log(10.0) + 0.1 * rng.standard_normal(shape)
        elif name == "b":
            value = -2.0 + 0.1 * rng.standard_normal(shape)
        elif leaf in ("embedding", "pos_embedding", "probe"):
            value = rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
            if name.endswith("/out/kernel"):
                fan_in = shape[0] * shape[1]
            value = kernel_std * rng.standard_normal(shape) / math.sqrt(max(fan_in, 1))
        values[name] = value.astype(np.float32)
    return values


def random_tree(model, seed=0, std=0.2):
    """`random_values` for every parameter of `model` (kernel std `5 * std`)."""
    shapes = [(name, var.shape) for name, var in tree_entries(model)]
    return random_values(shapes, seed, kernel_std=5.0 * std)


def randomize_weights(model, seed=0):
    """Assign `random_tree(model, seed)` to `model` and return the tree."""
    tree = random_tree(model, seed)
    assign_tree(model, tree)
    return tree


# The SigLIP 2 tiny config of transformers' tests (docs/naflex.md): a 4x4 position table,
# patch 2, so patches have 12 values; grids may downsample one axis of the table and upsample
# the other.
TINY_NAFLEX_CONFIG = dict(
    vision=dict(patch_size=2, width=32, depth=2, mlp_dim=37, num_heads=4, position_grid_size=4),
    text=dict(vocabulary_size=99, sequence_length=16, width=32, depth=2, mlp_dim=37, num_heads=4),
)


def build_tiny_naflex(seed=0, **model_kwargs):
    """A tiny NaFlex `SigLIP` (`TINY_NAFLEX_CONFIG`) with weights from `randomize_weights`."""
    return _build(True, TINY_NAFLEX_CONFIG, "tiny_naflex", seed, model_kwargs)


def random_naflex_inputs(spatial_shapes, max_num_patches, patch_size=2, seed=0, padding=0.0):
    """A NaFlex input dict with random patches in [-1, 1] for the given grids.

    Args:
        spatial_shapes: list of `(h, w)` patch grids, one per example.
        max_num_patches: int, the padded sequence length `N`.
        patch_size: int `p`; patches have `p*p*3` values.
        seed: int.
        padding: float, or `"random"` for large random values (±1e4) in the padded rows, which
            must not change any valid output.

    Returns:
        dict with float32 `patches (B, N, p*p*3)`, int32 `patch_mask (B, N)` and int32
        `spatial_shapes (B, 2)`.
    """
    rng = np.random.default_rng(seed)
    batch, dim = len(spatial_shapes), patch_size * patch_size * 3
    if padding == "random":  # its own stream: the valid patches do not depend on the padding
        pad_rng = np.random.default_rng([seed, 1])
        patches = pad_rng.uniform(-1e4, 1e4, (batch, max_num_patches, dim))
    else:
        patches = np.full((batch, max_num_patches, dim), float(padding))
    mask = np.zeros((batch, max_num_patches), np.int32)
    for i, (h, w) in enumerate(spatial_shapes):
        patches[i, : h * w] = rng.uniform(-1, 1, (h * w, dim))
        mask[i, : h * w] = 1
    return {
        "patches": patches.astype(np.float32),
        "patch_mask": mask,
        "spatial_shapes": np.asarray(spatial_shapes, np.int32).reshape(batch, 2),
    }
