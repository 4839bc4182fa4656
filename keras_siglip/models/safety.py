"""What `SigLIP.fit`, `evaluate` and `predict` check before their loops, and the training guard.

Keras slices a dict of arrays into batches inside its loops and, on JAX and TensorFlow, traces
the step once (TensorFlow relaxes the shapes after a second signature), so per-batch checks would
see only symbolic shapes. The whole data set is therefore checked once, up front, with the same
checks as an eager call: keys, matching example counts, shapes, dtypes, token ids, pixel values.
A `tf.data.Dataset` is checked through its `element_spec` (shapes and dtypes); values the model
only sees inside the compiled step are handled there (see `keras_siglip.models.validation`).

Training never applies a non-finite update: `guarded_optimizer` wraps the optimizer in Keras'
`LossScaleOptimizer` with a constant scale of 1 (loss and gradients unchanged, bit for bit),
which skips any step whose gradients hold NaN or inf, on every backend and inside the compiled
step; `NonFiniteLossGuard` then stops `fit` with a `FloatingPointError` naming the batch.
"""

import keras
import numpy as np

from keras_siglip.models.validation import static_shape

INPUT_KEYS = ("images", "token_ids")


def _leading(x):
    """The number of examples of a model input (NaFlex: its `patches`), or None if unknown."""
    if isinstance(x, dict):
        x = x.get("patches")
    if x is None:
        return None
    shape = static_shape(x)
    return shape[0] if shape else None


def check_structure(inputs, *, training=False, together=False, caller="SigLIP"):
    """Keys of the model's input dict and, where the batch is one set of pairs, matching counts.

    `training`: both towers' inputs are needed (the loss pairs image i with text i).
    `together`: `fit`, `evaluate` and `predict` slice the entries into batches together.
    """
    if not isinstance(inputs, dict) or not (set(INPUT_KEYS) & set(inputs)):
        raise ValueError(
            f"{caller} expects a dict with 'images' and/or 'token_ids'; received "
            f"{type(inputs).__name__}"
            + (f" with keys {sorted(inputs)}" if isinstance(inputs, dict) else "")
            + "."
        )
    unknown = sorted(set(inputs) - set(INPUT_KEYS))
    if unknown:
        raise ValueError(
            f"{caller} received unknown input keys {unknown}; the keys are 'images' and "
            "'token_ids'."
        )
    if training and set(INPUT_KEYS) - set(inputs):
        raise ValueError(
            f"{caller} trains on image-text pairs: the inputs need both 'images' and "
            f"'token_ids'; received only {sorted(inputs)}."
        )
    if (training or together) and len(inputs) == 2:
        num_images, num_texts = _leading(inputs["images"]), _leading(inputs["token_ids"])
        if None not in (num_images, num_texts) and num_images != num_texts:
            hint = (
                "image i is the positive of text i"
                if training
                else "they are split into batches together; encode them separately with "
                "encode_images and encode_texts"
            )
            raise ValueError(
                f"{caller} needs as many 'images' as 'token_ids' ({hint}); received "
                f"{num_images} images and {num_texts} token_ids."
            )


def _symbolic(spec):
    return keras.KerasTensor(tuple(spec.shape), dtype=keras.backend.standardize_dtype(spec.dtype))


def data_inputs(x):
    """The model inputs to check up front: a dict of arrays, a dataset's spec, or None."""
    if isinstance(x, dict) or hasattr(x, "shape"):
        return x  # an array is refused by `check_structure`, naming its type
    element_spec = getattr(x, "element_spec", None)  # a tf.data.Dataset
    if element_spec is None:
        return None
    if isinstance(element_spec, tuple):
        element_spec = element_spec[0]
    if not isinstance(element_spec, dict):
        return element_spec
    return keras.tree.map_structure(_symbolic, element_spec)


def check_no_weights(caller, sample_weight, class_weight):
    """The sigmoid loss scores pairs, not examples: per-example weights would be ignored."""
    for name, value in (("sample_weight", sample_weight), ("class_weight", class_weight)):
        if value is not None:
            raise ValueError(
                f"SigLIP.{caller} with the sigmoid loss does not support {name}: the loss "
                "sums over all B x B image-text pairs of a batch, so a weight per example "
                f"has no meaning and would be ignored. Remove {name} (to weight examples, "
                "repeat or drop them in the data, or compile with a loss of your own)."
            )


def check_text_rows(outputs):
    """After `predict` on data checked only inside the step: rows with clamped token ids."""
    text = outputs.get("text_embeddings") if isinstance(outputs, dict) else None
    if text is None:
        return
    bad = np.flatnonzero(np.isnan(np.asarray(text)).any(axis=-1))
    if bad.size:
        raise ValueError(
            f"`token_ids` of example(s) {bad[:10].tolist()} hold ids outside the text tower's "
            "vocabulary (or the text weights hold NaN), so their embeddings are NaN. Use the "
            "tokenizer that matches this model."
        )


def guarded_optimizer(optimizer):
    """`optimizer` wrapped so that a step with non-finite gradients changes no weight."""
    optimizer = keras.optimizers.get(optimizer)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer  # skips non-finite steps already
    # A constant scale of 1 (it would double only after 2**30 finite steps): the loss and the
    # gradients are unchanged; only the skip of a non-finite step remains.
    return keras.optimizers.LossScaleOptimizer(
        optimizer, initial_scale=1.0, dynamic_growth_steps=2**30
    )


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop `fit` with a `FloatingPointError` at the first batch whose loss is not finite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(np.asarray(keras.ops.convert_to_numpy(loss)))
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"SigLIP.fit: the training loss became {loss} at epoch {self.epoch + 1}, batch "
                f"{batch + 1}. The update of that step was not applied (the weights are those "
                "from before the batch) and training stopped. Causes: NaN or inf pixels in the "
                "batch (find them with model.set_input_checks(finite=True)), token ids outside "
                "the vocabulary in data the model sees only inside the step (tf.data, "
                "generators), or a diverging run (lower the learning rate)."
            )
