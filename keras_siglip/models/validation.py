"""Input checks of the towers: shapes when the model is traced, values when they are concrete.

Each check raises a ValueError that names the input, what was received and what to do. Value
checks run once per call on the whole batch, before any compiled function; inside a trace only
the static shapes and dtypes are known and checked. The rules:

* images (and NaFlex patches) must be floating point; integer pixels (uint8) are refused with
  the fix (`keras_siglip.preprocessing.preprocess_images`);
* host-resident float images (NumPy, tensors on the CPU) must lie within
  `[-IMAGE_LIMIT, IMAGE_LIMIT]`: the model takes `[-1, 1]`, the margin admits resampling
  overshoot and light augmentation, and pixels in `[0, 255]` are refused (pixels in `[0, 1]` lie
  in range and cannot be told apart). `tower.set_input_checks(image_range=False)` turns it off;
* with `tower.set_input_checks(finite=True)` host-resident images must hold no NaN or inf
  (NaFlex: in the valid rows; padded rows may hold anything);
* token ids must lie in `[0, vocabulary_size)` (host-resident ids). Ids whose values the check
  does not see (inside a compiled step, on an accelerator) are clamped by the text tower, and
  the rows that held one get a NaN embedding, which `SigLIP.predict`, `fit` and `evaluate` turn
  into an error (`token_id_error`): the same answer on every backend.

Inputs already on an accelerator are checked for shape and dtype only: their values would need
a transfer to the host. `values=False` (what `SigLIP` passes inside Keras' `fit`, `evaluate`
and `predict` steps, whose data it checked up front) skips the value checks on every backend.
"""

import keras
import numpy as np

from keras_siglip.backend import is_concrete

NAFLEX_KEYS = ("patches", "patch_mask", "spatial_shapes")
IMAGE_LIMIT = 1.5
FIXES = {
    "images": "Use keras_siglip.preprocessing.preprocess_images (uint8 or [0, 255] pixels -> "
    "resized float32 in [-1, 1])",
    "patches": "Use keras_siglip.preprocessing.naflex_patchify (uint8 or [0, 255] pixels -> "
    "float32 patches in [-1, 1])",
}


def host_values(x):
    """`x` as a NumPy array when its values are on the host (NumPy, a CPU tensor), else None."""
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        return np.asarray(x)
    if not is_concrete(x):
        return None
    device = getattr(x, "device", None)
    devices = getattr(x, "devices", None)  # jax.Array
    if callable(devices):
        kinds = {d.platform for d in devices()}
    else:
        kinds = {str(getattr(device, "type", device)).lower()}
    if not any("cpu" in k for k in kinds):
        return None
    return _to_numpy(x)


def _check_float_pixels(tower, name, x):
    dtype = keras.backend.standardize_dtype(getattr(x, "dtype", None) or np.asarray(x).dtype)
    if "float" not in dtype:
        raise ValueError(
            f"`{name}` have dtype {dtype}, but '{tower.name}' takes float pixels in [-1, 1] "
            f"(pixel / 127.5 - 1). {FIXES[name]}."
        )


def check_pixel_values(tower, name, values):
    """The value rules of the module docstring on host `values` (the valid pixels only)."""
    if values.size == 0:
        return
    if getattr(tower, "check_finite", False) and not np.isfinite(values).all():
        bad = int(np.size(values) - np.isfinite(values).sum())
        raise ValueError(
            f"`{name}` hold {bad} NaN or inf value(s) (the finite-input check of "
            f"'{tower.name}' is on). Clean or drop those examples before calling the model."
        )
    if getattr(tower, "check_image_range", True):
        low, high = float(values.min()), float(values.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            # NaN and inf are the finite check's business, not range's (a rare, slower pass).
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0, 0)
        if low < -IMAGE_LIMIT or high > IMAGE_LIMIT:
            raise ValueError(
                f"`{name}` hold values in [{low:g}, {high:g}], but '{tower.name}' takes pixels "
                f"scaled to [-1, 1] (values beyond +-{IMAGE_LIMIT} are refused; 0-255 pixels "
                f"are the usual cause). {FIXES[name]}; or turn the check off with "
                "set_input_checks(image_range=False)."
            )


def static_shape(x):
    """The shape of `x` as a tuple of ints or None."""
    return tuple(getattr(x, "shape", np.shape(x)))


def _to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def check_images(tower, images, values=True):
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
    _check_float_pixels(tower, "images", images)
    pixels = host_values(images) if values else None
    if pixels is not None:
        check_pixel_values(tower, "images", pixels)


def check_naflex_inputs(tower, inputs, values=True):
    """NaFlex: the patch dict's keys and shapes; with host values, grids vs. mask."""
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
    _check_float_pixels(tower, "patches", patches)
    mask, shapes = (host_values(x) if values else None for x in (mask, shapes))
    if mask is not None and shapes is not None:
        mask = mask.astype(bool)
        _check_naflex_values(mask, shapes.astype(np.int64))
        pixels = host_values(patches)
        if pixels is not None:
            check_pixel_values(tower, "patches", pixels[mask])


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


def check_token_ids(tower, token_ids, values=True):
    """Text: int `(B, L)` with the tower's length; with host values, ids in the vocabulary."""
    shape = static_shape(token_ids)
    expected = f"(batch, {tower.sequence_length}) integer token ids"
    if len(shape) != 2 or shape[1] not in (None, tower.sequence_length):
        raise ValueError(f"`token_ids` must have shape {expected}; received shape {shape}.")
    dtype = keras.backend.standardize_dtype(getattr(token_ids, "dtype", "int32"))
    if "int" not in dtype:
        raise ValueError(f"`token_ids` must be {expected}; received dtype {dtype}.")
    ids = host_values(token_ids) if values else None
    if ids is not None and ids.size and (ids.min() < 0 or ids.max() >= tower.vocabulary_size):
        outside = (ids < 0) | (ids >= tower.vocabulary_size)
        raise token_id_error(tower, np.flatnonzero(outside.any(axis=1)), np.unique(ids[outside]))


def token_id_error(tower, rows, found=None):
    """The ValueError for token ids outside `tower`'s vocabulary in examples `rows`.

    `found`: the offending ids when they are known (checked on the host); None when only their
    effect was seen (the NaN embedding of a clamped row, after a compiled step).
    """
    shown = rows[:10].tolist() + (["..."] if len(rows) > 10 else [])
    if found is not None:
        ids = found[:5].tolist() + (["..."] if len(found) > 5 else [])
        how = f": found ids {ids}"
    else:
        how = " (seen only inside the model's step, where such ids give a NaN embedding)"
    return ValueError(
        f"`token_ids` of example(s) {shown} hold ids outside the vocabulary of '{tower.name}' "
        f"([0, {tower.vocabulary_size - 1}]){how}. Use the tokenizer that matches this model."
    )
