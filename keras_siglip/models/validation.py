"""Input checks of the towers: shapes when the model is traced, values when they are concrete.

Each check raises a ValueError that names the input, what was received and what to do. Value
checks (NaFlex grids against the mask and the budget, token ids against the vocabulary) run
once per call on the whole batch, before any compiled function; inside a trace only the static
shapes are known and checked.
"""

import keras
import numpy as np

from keras_siglip.backend import is_concrete

NAFLEX_KEYS = ("patches", "patch_mask", "spatial_shapes")


def static_shape(x):
    """The shape of `x` as a tuple of ints or None."""
    return tuple(getattr(x, "shape", np.shape(x)))


def _to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def check_images(tower, images):
    """Fixed resolution: `(B, H, W, 3)` whose patch grid is the tower's."""
    shape = static_shape(images)
    if len(shape) != 4 or shape[-1] not in (None, 3):
        raise ValueError(
            "`images` must have shape (batch, height, width, 3), channels last; received "
            f"shape {shape}."
        )
    h, w = shape[1], shape[2]
    if h is None or w is None:
        return
    grid = (h // tower.patch_size, w // tower.patch_size)
    if grid != tower.grid_size:
        raise ValueError(
            f"`images` of size {h}x{w} give a {grid[0]}x{grid[1]} patch grid, but "
            f"'{tower.name}' was built for {tower.image_size[0]}x{tower.image_size[1]} "
            f"images ({tower.grid_size[0]}x{tower.grid_size[1]} patches of "
            f"{tower.patch_size}); expected shape (batch, {tower.image_size[0]}, "
            f"{tower.image_size[1]}, 3). Resize the images or the position embedding."
        )


def check_naflex_inputs(tower, inputs):
    """NaFlex: the patch dict's keys and shapes; with concrete values, grids vs. mask."""
    if not isinstance(inputs, dict) or set(NAFLEX_KEYS) - set(inputs):
        got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(
            f"'{tower.name}' (a NaFlex tower) expects a dict with keys {list(NAFLEX_KEYS)} "
            f"(see keras_siglip.preprocessing.naflex_patchify); received {got}."
        )
    patches, mask, shapes = (inputs[key] for key in NAFLEX_KEYS)
    p, dim = tower.patch_size, tower.patch_dim
    patch_shape = static_shape(patches)
    if len(patch_shape) != 3 or patch_shape[-1] not in (None, dim):
        raise ValueError(
            f"`patches` must have shape (batch, num_patches, {dim}): patch_size={p} gives "
            f"{p}*{p}*3 = {dim} values per patch (row, col, channel); received shape "
            f"{patch_shape}."
        )
    batch, num_patches = patch_shape[0], patch_shape[1]
    if num_patches == 0:
        raise ValueError(
            "`patches` has 0 rows: the patch budget (max_num_patches) must be at least 1."
        )
    mask_shape, shapes_shape = static_shape(mask), static_shape(shapes)
    if len(mask_shape) != 2 or any(
        a is not None and b is not None and a != b for a, b in zip(mask_shape, patch_shape)
    ):
        raise ValueError(
            f"`patch_mask` must have shape (batch, num_patches) = {patch_shape[:2]}; "
            f"received {mask_shape}."
        )
    if len(shapes_shape) != 2 or shapes_shape[-1] != 2 or (
        batch is not None and shapes_shape[0] not in (None, batch)
    ):
        raise ValueError(
            f"`spatial_shapes` must have shape (batch, 2) = ({batch}, 2), the patch grid "
            f"(h, w) of each image; received {shapes_shape}."
        )
    if is_concrete(mask) and is_concrete(shapes):
        _check_naflex_values(_to_numpy(mask).astype(bool), _to_numpy(shapes).astype(np.int64))


def _check_naflex_values(mask, shapes):
    num_patches = mask.shape[1]
    h, w = shapes[:, 0], shapes[:, 1]
    need = h * w
    empty = np.flatnonzero((h <= 0) | (w <= 0))
    if empty.size:
        i = empty[0]
        raise ValueError(
            f"spatial_shapes[{i}] = ({h[i]}, {w[i]}): a patch grid needs h > 0 and w > 0."
        )
    too_big = np.flatnonzero(need > num_patches)
    if too_big.size:
        i = too_big[0]
        raise ValueError(
            f"spatial_shapes[{i}] = ({h[i]}, {w[i]}) needs {need[i]} patches but the inputs "
            f"hold only {num_patches} rows (the budget max_num_patches is too small for this "
            "grid)."
        )
    # The mask must mark exactly the first h*w rows of each example.
    expected = np.arange(num_patches)[None, :] < need[:, None]
    wrong = np.flatnonzero((mask != expected).any(axis=1))
    if wrong.size:
        i = wrong[0]
        count = int(mask[i].sum())
        raise ValueError(
            f"patch_mask[{i}] disagrees with spatial_shapes[{i}] = ({h[i]}, {w[i]}): it must "
            f"mark exactly the first h*w = {need[i]} rows, but it marks {count} rows"
            + ("" if count != need[i] else " that are not a prefix")
            + "."
        )


def check_token_ids(tower, token_ids):
    """Text: int `(B, L)` with the tower's length; with concrete values, ids in the vocabulary."""
    shape = static_shape(token_ids)
    expected = f"(batch, {tower.sequence_length}) integer token ids"
    if len(shape) != 2 or shape[1] not in (None, tower.sequence_length):
        raise ValueError(f"`token_ids` must have shape {expected}; received shape {shape}.")
    dtype = keras.backend.standardize_dtype(getattr(token_ids, "dtype", "int32"))
    if "int" not in dtype:
        raise ValueError(f"`token_ids` must be {expected}; received dtype {dtype}.")
    if is_concrete(token_ids):
        ids = _to_numpy(token_ids)
        if ids.size and (ids.min() < 0 or ids.max() >= tower.vocabulary_size):
            raise ValueError(
                f"`token_ids` hold ids in [{ids.min()}, {ids.max()}], outside the "
                f"vocabulary of '{tower.name}' ([0, {tower.vocabulary_size - 1}]). Use "
                "the tokenizer that matches this model."
            )
