"""What `SigLIP.fit`, `evaluate` and `predict` check before their loops, and the training guard.

Keras slices a dict of arrays into batches inside its loops and, on JAX and TensorFlow, traces
the step once (TensorFlow relaxes the shapes after a second signature), so per-batch checks would
see only symbolic shapes. The whole data set is therefore checked once, up front, with the same
checks as an eager call: keys, matching example counts, shapes, dtypes, token ids, pixel values.
A `tf.data.Dataset` is checked through its `element_spec` (shapes and dtypes); values the model
only sees inside the step are handled there (see `keras_siglip.models.validation`). Inside
Keras' steps (`step`) the towers check shapes and dtypes only, on every backend: torch runs its
steps eagerly and could check values there, but then it would answer differently from JAX and
TensorFlow, and copy accelerator inputs to the host on every batch.

Training never applies a non-finite update: `guarded_optimizer` wraps the optimizer in a
`NonFiniteStepGuard` (loss and gradients unchanged, bit for bit), which skips any step whose
gradients hold NaN or inf, on every backend and inside the compiled step, for one pass over the
gradients; `NonFiniteLossGuard` then stops `fit` (or `evaluate`) with a `FloatingPointError`
naming the batch.
"""

import contextlib

import keras
import numpy as np

from keras_siglip.backend.torch_optim import fuse_adam
from keras_siglip.models.validation import static_shape, token_id_error

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


def check_text_rows(text_encoder, outputs):
    """After `predict` on data checked only inside the step: rows with clamped token ids."""
    text = outputs.get("text_embeddings") if isinstance(outputs, dict) else None
    if text is None:
        return
    bad = np.flatnonzero(np.isnan(np.asarray(text)).any(axis=-1))
    if not bad.size:
        return
    weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in text_encoder.weights]
    if not all(np.isfinite(w).all() for w in weights):  # the other cause of NaN embeddings
        raise FloatingPointError(
            f"The weights of '{text_encoder.name}' hold NaN or inf, so its embeddings are NaN. "
            "Reload the weights (or the checkpoint) they were trained from."
        )
    raise token_id_error(text_encoder, bad)


@contextlib.contextmanager
def step(model):
    """Mark `model` as inside one of Keras' steps, whose data `fit`/`evaluate`/`predict` checked."""
    outer = model.__dict__.get("_keras_siglip_in_step", False)
    model.__dict__["_keras_siglip_in_step"] = True
    try:
        yield
    finally:
        model.__dict__["_keras_siglip_in_step"] = outer


def in_step(model):
    """Whether `model` runs inside a Keras step (see `step`)."""
    return bool(model.__dict__.get("_keras_siglip_in_step"))


def records_gradients(layer, training):
    """Whether a call of `layer` must keep torch's autograd graph (see `inference_context`).

    True when called with `training=True`, or while torch's module mode is "train": Keras' `fit`
    puts the model it trains, and every layer inside it, in that mode (`train()`) and back
    (`eval()`), so a tower inside a user's model trained with `fit` keeps its gradients even
    when that model's `call` does not pass `training` on.
    """
    return bool(training) or layer.__dict__.get("_keras_siglip_train_mode", False)


@contextlib.contextmanager
def fitting(model):
    """Around Keras' `fit`: torch's module mode ends as "eval", also when `fit` raises (Keras
    switches it back only after a complete run)."""
    try:
        yield
    finally:
        if model.__dict__.get("_keras_siglip_train_mode"):
            model.train(False)


class KerasLoops:
    """Mixin for a `keras.Model`: its train, test and predict steps run inside `step`, and its
    torch module mode is remembered (`records_gradients`)."""

    def train(self, mode=True):
        # torch only (`torch.nn.Module.train`, which Keras' fit calls on the outer model and
        # torch passes down to every layer); a fresh model counts as not training.
        self.__dict__["_keras_siglip_train_mode"] = bool(mode)
        return super().train(mode)

    def train_step(self, *args, **kwargs):
        with step(self):
            return super().train_step(*args, **kwargs)

    def test_step(self, *args, **kwargs):
        with step(self):
            return super().test_step(*args, **kwargs)

    def predict_step(self, *args, **kwargs):
        with step(self):
            return super().predict_step(*args, **kwargs)


def guarded_optimizer(optimizer):
    """`optimizer` wrapped so that a step with non-finite gradients changes no weight.

    On torch a Keras Adam or AdamW (the wrapped one too) updates through torch's fused kernel
    (`backend.torch_optim.fuse_adam`, for weights on the CPU: the same step, its Adam update one
    fused pass instead of ten `_foreach` passes).
    """
    optimizer = keras.optimizers.get(optimizer)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        fuse_adam(optimizer.inner_optimizer)
        return optimizer  # skips non-finite steps already
    return NonFiniteStepGuard(fuse_adam(optimizer))


@keras.saving.register_keras_serializable(package="keras_siglip")
class NonFiniteStepGuard(keras.optimizers.LossScaleOptimizer):
    """An optimizer that applies its `inner_optimizer`'s step only when every gradient is finite.

    Keras' `LossScaleOptimizer` at a constant scale of 1, kept for its non-finite skip and its
    serialization, with the cost of a step cut to one pass over the gradients: the check is one
    sum of `g * 0` per gradient (0 where every entry is finite, NaN where one is NaN or inf; it
    cannot overflow); the scale of 1 never multiplies the loss nor divides the gradients and is
    never halved by a skipped step (so the steps after one are the bare optimizer's too). On
    JAX the update runs inside a conditional (on a B/16 two-tower step of 11.3 s a select per
    variable instead cost 1.05 s, the conditional 0.3 s). On
    TensorFlow, sparse gradients (`tf.IndexedSlices`, the token embedding's) are made dense first:
    Keras' Adam and AdamW update the moments of a repeated index once per occurrence, which sums
    squared pieces instead of squaring their sum (and decays the moments once per occurrence), so
    a batch that repeats a token id (every padded text) would get another update than on JAX and
    torch.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that computes the update.
    """

    def __init__(self, inner_optimizer, initial_scale=1.0, dynamic_growth_steps=2**30, **kwargs):
        super().__init__(
            inner_optimizer,
            initial_scale=initial_scale,
            dynamic_growth_steps=dynamic_growth_steps,
            **kwargs,
        )

    def check_finite(self, grads):
        sums = [keras.ops.sum(keras.ops.multiply(keras.ops.cast(g, "float32"), 0.0))
                for g in grads if g is not None]  # fmt: skip
        return keras.ops.all(keras.ops.isfinite(keras.ops.stack(sums)))

    def _own_count(self):
        return len(self.variables) - len(self.inner_optimizer.variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        finite = self.check_finite(grads)
        own = list(optimizer_variables[: self._own_count()])
        inner = list(optimizer_variables[self._own_count():])

        def step():
            new_trainable, new_inner = self.inner_optimizer.stateless_apply(
                inner, grads, trainable_variables
            )
            return list(new_trainable), list(new_inner)

        def skip():
            return list(trainable_variables), inner

        new_trainable, new_inner = keras.ops.cond(finite, step, skip)
        return new_trainable, own + new_inner

    def scale_loss(self, loss):
        return loss  # the scale is always 1: no multiply, the loss bit for bit

    def _stateful_handle_finite_grads(self, grads, trainable_variables):
        self.inner_optimizer.apply(grads, trainable_variables=trainable_variables)

    def _stateful_handle_non_finite_grads(self):
        pass  # skip the step; the scale stays 1 (a plain LossScaleOptimizer would halve it)

    def apply(self, grads, trainable_variables=None):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                     for g in grads]  # fmt: skip
            return super().apply(grads, trainable_variables)  # a tf.cond; tf.distribute too
        # Eager (torch's train step, JAX outside jit): decide in Python. A traced cond around
        # stateful updates is what JAX cannot take; torch would sync on the check anyway.
        if not self.built:
            self.build(trainable_variables or self._trainable_variables)
            self.built = True
        if bool(keras.ops.convert_to_numpy(self.check_finite(grads))):
            self.inner_optimizer.apply(grads, trainable_variables)


def with_guard(callbacks, caller):
    """`callbacks` (None, a list or a `CallbackList`) with one `NonFiniteLossGuard` in it."""
    if not isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = list(callbacks or [])
    present = callbacks.callbacks if isinstance(callbacks, keras.callbacks.CallbackList) else (
        callbacks)
    if not any(isinstance(c, NonFiniteLossGuard) for c in present):
        callbacks.append(NonFiniteLossGuard(caller))  # the one inside fit serves its evaluate
    return callbacks


_CAUSES = (
    "Causes: NaN or inf pixels in the batch (find them with model.set_input_checks("
    "finite=True)), token ids outside the vocabulary in data the model sees only inside the "
    "step (tf.data, generators), or {last}."
)


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop `fit` or `evaluate` with a `FloatingPointError` at the first non-finite loss.

    Added by `SigLIP.fit` and `SigLIP.evaluate`. In training, the step of that batch changed no
    weight (`guarded_optimizer` skips steps with non-finite gradients).
    """

    def __init__(self, caller="fit"):
        super().__init__()
        self.caller = caller
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _loss(self, logs):
        loss = (logs or {}).get("loss")
        loss = None if loss is None else float(np.asarray(keras.ops.convert_to_numpy(loss)))
        if loss is not None and not np.isfinite(loss) and keras.backend.backend() == "jax":
            # JAX's loops detach the variables while they run and reattach them at the end:
            # reattach now (the skipped step's state), as the loop will not after the raise.
            self.model.jax_state_sync()
        return loss

    def on_train_batch_end(self, batch, logs=None):
        loss = self._loss(logs)
        if loss is not None and not np.isfinite(loss):
            raise FloatingPointError(
                f"SigLIP.fit: the training loss became {loss} at epoch {self.epoch + 1}, batch "
                f"{batch + 1}. The update of that step was not applied (the weights are those "
                "from before the batch) and training stopped. "
                + _CAUSES.format(last="a diverging run (lower the learning rate)")
            )

    def on_test_batch_end(self, batch, logs=None):
        # Keras reports the running mean: the first non-finite one is this batch's.
        loss = self._loss(logs)
        if loss is not None and not np.isfinite(loss):
            during = " (the validation pass of fit)" if self.caller == "fit" else ""
            raise FloatingPointError(
                f"SigLIP.evaluate{during}: the loss became {loss} at batch {batch + 1}; no "
                "meaningful loss can be reported. "
                + _CAUSES.format(last="weights that hold NaN")
            )
