"""Portable conformance kits: oracle-computed inputs and per-stage expected outputs.

A kit is a folder with three files, readable with NumPy alone (see docs/conformance_kit.md):

    manifest.json     config, stage order, shapes, dtypes, float32 tolerances, file hashes
    kit.npz           params/<big_vision name> (float32), inputs/<name>, expected/<stage> (float64)
    kit_float32.npz   the same with every floating array cast to float32

`build_kit` computes the expected values with the float64 NumPy oracle (`keras_siglip_reference`);
`verify(kit, fn)` runs any implementation `fn(params, inputs) -> {stage: array}` and names the
first stage, in the manifest's order, whose error exceeds its tolerance. `keras_fn` and
`transformers_fn` are the two adapters the command line offers.

Preset kits (`build_preset_kit`) use a released checkpoint found in the weights cache instead of
random parameters: their manifest points at it (`checkpoint`: preset, hf_id, big_vision_file,
local file, sha256) and `load_kit` reads it back, after checking the sha256.

Stages are the oracle's intermediates, prefixed by tower: `img/stem`, `img/with_posemb`,
`img/block00/sa`, `img/block00/+sa`, `img/block00/mlp`, `img/block00/+mlp`, ..., `img/encoded`,
`img/pooled` (MAP head), `txt/embedded`, ..., `txt/pre_logits`, `txt/pooled`, then `zimg`,
`ztxt` (normalised embeddings), `logits`, `loss`, `grad_zimg`, `grad_ztxt`, `grad_t_param`,
`grad_b` (the sigmoid loss of the square batch and its gradients).

Modules: `kit` (tiny kits, writing), `presets` (preset kits, checkpoint lookup and hashing),
`verify` (reading, verification), `adapters.keras` and `adapters.transformers`, `runners` (the
command line).
"""

from keras_siglip.conformance.adapters import BROKEN_VARIANTS
from keras_siglip.conformance.adapters.keras import (
    break_keras_model,
    keras_fn,
    keras_model,
)
from keras_siglip.conformance.adapters.transformers import (
    transformers_fn,
    transformers_model,
)
from keras_siglip.conformance.kit import (
    BATCH,
    DEFAULT_KITS,
    EMBEDDING_SCALE,
    KIT_FILES,
    KIT_FORMAT,
    NAFLEX_GRIDS,
    NAFLEX_MAX_PATCHES,
    RTOL,
    KitDataError,
    build_kit,
    kit_config,
    oracle_stages,
    random_params,
    write_kit,
)
from keras_siglip.conformance.presets import (
    PRESET_BATCH,
    KitWeightsError,
    build_preset_kit,
    checkpoint_hashes,
    checkpoint_params,
    find_preset_weights,
    locate_checkpoint,
    naflex_preset_grids,
    read_checkpoint_tree,
    write_preset_kit,
)
from keras_siglip.conformance.runners import find_kits, run_vectors, run_verify
from keras_siglip.conformance.verify import Report, load_kit, verify
from keras_siglip.convert.names import tree_shapes

__all__ = [
    "BATCH",
    "BROKEN_VARIANTS",
    "DEFAULT_KITS",
    "EMBEDDING_SCALE",
    "KIT_FILES",
    "KIT_FORMAT",
    "NAFLEX_GRIDS",
    "NAFLEX_MAX_PATCHES",
    "PRESET_BATCH",
    "RTOL",
    "KitDataError",
    "KitWeightsError",
    "Report",
    "break_keras_model",
    "build_kit",
    "build_preset_kit",
    "checkpoint_hashes",
    "checkpoint_params",
    "find_kits",
    "find_preset_weights",
    "keras_fn",
    "keras_model",
    "kit_config",
    "load_kit",
    "locate_checkpoint",
    "naflex_preset_grids",
    "oracle_stages",
    "random_params",
    "read_checkpoint_tree",
    "run_vectors",
    "run_verify",
    "transformers_fn",
    "transformers_model",
    "tree_shapes",
    "verify",
    "write_kit",
    "write_preset_kit",
]
