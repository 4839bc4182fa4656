"""The two-tower SigLIP model: L2-normalised embeddings and sigmoid logits."""

import contextlib
import inspect
import math
import os

import keras
from keras import ops

from keras_siglip import backend, distributed, registry
from keras_siglip.architectures import PRESETS
from keras_siglip.arguments import check_bool, check_float, check_int
from keras_siglip.losses import SigmoidLoss, sigmoid_loss
from keras_siglip.models import safety
from keras_siglip.models.batching import batches, num_examples
from keras_siglip.models.naflex_vision_encoder import SigLIPNaFlexVisionEncoder
from keras_siglip.models.text_encoder import SigLIPTextEncoder
from keras_siglip.models.vision_encoder import SigLIPVisionEncoder


def l2_normalize(x, epsilon=1e-8):
    """`x / (||x|| + epsilon)` over the last axis (big_vision's form, safe at 0).

    `epsilon=0` gives transformers' `x / ||x||`.
    """
    x = ops.cast(x, "float32")
    norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / (norm + epsilon)


@keras.saving.register_keras_serializable(package="keras_siglip")
class SigLIP(safety.KerasLoops, keras.Model):
    """SigLIP / SigLIP 2: an image tower and a text tower trained with the sigmoid loss.

    `logits[i, j] = exp(logit_scale) * <img_i, txt_j> + logit_bias` on
    L2-normalised embeddings; probabilities are `sigmoid(logits)` per pair
    (not a softmax over a row).

    Args:
        vision_encoder: a `SigLIPVisionEncoder` or `SigLIPNaFlexVisionEncoder`.
        text_encoder: a `SigLIPTextEncoder`. Its embedding width must equal
            the vision width.
        logit_scale_init: float. Initial log-temperature; `log(10)` as in
            the paper.
        logit_bias_init: float. Initial bias; -10 as in the paper.
        l2_epsilon: float. Added to the norm before dividing (big_vision's
            1e-8); 0 gives transformers' form.

    Call arguments:
        inputs: dict with `"images"` (fixed resolution: `(B, H, W, 3)` in
            `[-1, 1]`; NaFlex: the patch dict) and/or `"token_ids"` `(B, L)`.
        training: with `training=True` the output also holds `logit_scale`
            and `logit_bias` (what `SigmoidLoss` needs).

    Returns a dict with `image_embeddings` and `text_embeddings` (normalised)
    and, when both inputs are given, `logits (B_images, B_texts)`.

    Example:
    >>> model = SigLIP.from_preset("siglip_base_patch16_224", load_weights=False)
    """

    def __init__(
        self,
        vision_encoder,
        text_encoder,
        logit_scale_init=math.log(10.0),
        logit_bias_init=-10.0,
        l2_epsilon=1e-8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, tower, kinds in (
            ("vision_encoder", vision_encoder, (SigLIPVisionEncoder, SigLIPNaFlexVisionEncoder)),
            ("text_encoder", text_encoder, (SigLIPTextEncoder,)),
        ):
            if not isinstance(tower, kinds):
                raise TypeError(
                    f"{name} must be a {' or a '.join(k.__name__ for k in kinds)}; received "
                    f"{type(tower).__name__}."
                )
        if vision_encoder.width != text_encoder.embed_dim:
            raise ValueError(
                f"The image embedding width ({vision_encoder.width}) differs from the text "
                f"embedding width ({text_encoder.embed_dim}); set the text tower's "
                "embed_dim to the vision width."
            )
        self.vision_encoder = vision_encoder
        self.text_encoder = text_encoder
        self.logit_scale_init = check_float("logit_scale_init", logit_scale_init)
        self.logit_bias_init = check_float("logit_bias_init", logit_bias_init)
        self.l2_epsilon = check_float("l2_epsilon", l2_epsilon)
        if self.l2_epsilon < 0:
            raise ValueError(f"l2_epsilon must be >= 0; received {self.l2_epsilon}.")
        self._sigmoid_loss = None  # set by `compile`
        self._ring = "auto"
        self.logit_scale = self.add_weight(
            name="logit_scale",
            shape=(1,),
            initializer=keras.initializers.Constant(self.logit_scale_init),
        )
        self.logit_bias = self.add_weight(
            name="logit_bias",
            shape=(1,),
            initializer=keras.initializers.Constant(self.logit_bias_init),
        )
        self.built = True
        auto = backend.auto_jit_compile()
        if auto is not None:
            self.jit_compile = auto
            self._keras_siglip_auto_jit = True

    @property
    def embed_dim(self):
        return self.vision_encoder.width

    def encode_images(self, images, batch_size=None):
        """Pooled image embeddings `(B, D)`, **not** normalised (the MAP head output).

        Args:
            images: fixed resolution: float `(B, H, W, 3)` in `[-1, 1]`;
                NaFlex: the dict `{"patches", "patch_mask", "spatial_shapes"}`.
            batch_size: int or None. Encode this many examples at a time.

        An inference path: concrete inputs run through a compiled function
        (JAX `jit`, `tf.function` with XLA, on torch a graph of the eager
        ATen calls recorded once per input shape and run under
        `torch.inference_mode()`); tensors being traced run inline. For gradients,
        call `model.vision_encoder(images)`.
        """
        batch_size = check_int("batch_size", batch_size, allow_none=True)
        self.vision_encoder.validate(images)
        return self._encode(self.vision_encoder, images, batch_size)

    def encode_texts(self, token_ids, batch_size=None):
        """Pooled text embeddings `(B, D)`, **not** normalised (the text head output).

        Args:
            token_ids: int `(B, L)` from the matching tokenizer.
            batch_size: int or None. Encode this many examples at a time.
        """
        batch_size = check_int("batch_size", batch_size, allow_none=True)
        self.text_encoder.validate(token_ids)
        return self._encode(self.text_encoder, token_ids, batch_size)

    def validate(self, inputs, training=False, together=False, values=True):
        """Raise a ValueError naming the problem unless `inputs` fit the model.

        `inputs` is the dict of `call`: its keys (with `training`, both towers' inputs, as many
        images as texts; with `together`, as `fit`/`predict` slice them, as many of each), then
        each tower's entry: shapes and dtypes always; with `values`, the values of host-resident
        inputs too (token ids against the vocabulary, pixel range, NaFlex grids against mask
        and budget).
        """
        safety.check_structure(inputs, training=training, together=together)
        if "images" in inputs:
            self.vision_encoder.validate(inputs["images"], values)
        if "token_ids" in inputs:
            self.text_encoder.validate(inputs["token_ids"], values)

    def set_input_checks(self, finite=None, image_range=None):
        """Turn the optional value checks of both towers on or off (`Tower.set_input_checks`).

        Args:
            finite: bool. Refuse host-resident images holding NaN or inf (default off).
            image_range: bool. Refuse host-resident images beyond [-1.5, 1.5] (default on).
        """
        for tower in (self.vision_encoder, self.text_encoder):
            tower.set_input_checks(finite=finite, image_range=image_range)
        return self

    def __call__(self, inputs, *args, **kwargs):
        training = kwargs.get("training", args[0] if args else None)
        # Inside Keras' steps the data was checked up front (`fit`, `evaluate`, `predict`):
        # values are left to the in-step clamp, alike on every backend and without copies.
        self.validate(inputs, training=bool(training), values=not safety.in_step(self))
        with self._towers_checked():
            return super().__call__(inputs, *args, **kwargs)

    @contextlib.contextmanager
    def _towers_checked(self):
        """The model validated its whole input: the towers skip their own validation."""
        towers = (self.vision_encoder, self.text_encoder)
        for tower in towers:
            tower.__dict__["_keras_siglip_checked"] = True
        try:
            yield
        finally:
            for tower in towers:
                tower.__dict__.pop("_keras_siglip_checked", None)

    def _check_data(self, caller, x, training):
        """Check the whole of `x` once, before Keras' loop (see `keras_siglip.models.safety`)."""
        inputs = safety.data_inputs(x)
        if inputs is None:
            return
        caller = f"SigLIP.{caller}"
        safety.check_structure(inputs, training=training, together=True, caller=caller)
        self.validate(inputs, training=training, together=True)

    def _bind(self, method, args, kwargs):
        return inspect.signature(method).bind(self, *args, **kwargs)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with the data checked up front and non-finite steps refused.

        The whole of `x` (and `validation_data`) is checked once before the loop. A step whose
        gradients are not finite changes no weight, and training stops with a
        `FloatingPointError` naming the batch. `sample_weight` and `class_weight` are refused
        by the sigmoid loss (it scores pairs, not examples).
        """
        bound = self._bind(keras.Model.fit, args, kwargs)
        arguments = bound.arguments
        pairs = self._sigmoid_loss is not None
        if pairs:
            safety.check_no_weights(
                "fit", arguments.get("sample_weight"), arguments.get("class_weight")
            )
        self._check_data("fit", arguments.get("x"), training=pairs)
        validation_data = arguments.get("validation_data")
        if isinstance(validation_data, (tuple, list)) and validation_data:
            validation_data = validation_data[0]
        if validation_data is not None:
            self._check_data("fit", validation_data, training=pairs)
        arguments["callbacks"] = safety.with_guard(arguments.get("callbacks"), "fit")
        with safety.fitting(self):
            return super().fit(*bound.args[1:], **bound.kwargs)

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`, with the data checked up front (as `fit`).

        A batch whose loss is not finite (NaN pixels, token ids outside the vocabulary in data
        seen only inside the step) stops it with a `FloatingPointError` naming the batch.
        """
        bound = self._bind(keras.Model.evaluate, args, kwargs)
        arguments = bound.arguments
        if self._sigmoid_loss is not None:
            safety.check_no_weights("evaluate", arguments.get("sample_weight"), None)
        if not arguments.get("kwargs", {}).get("_use_cached_eval_dataset"):  # fit checked it
            self._check_data("evaluate", arguments.get("x"), self._sigmoid_loss is not None)
        arguments["callbacks"] = safety.with_guard(arguments.get("callbacks"), "evaluate")
        return super().evaluate(*bound.args[1:], **bound.kwargs)

    def predict(self, *args, **kwargs):
        """`keras.Model.predict`, with the data checked up front.

        Data checked only inside the step (a `tf.data.Dataset`, a generator) whose token ids
        fall outside the vocabulary gives NaN text embeddings there; `predict` raises a
        ValueError naming those examples instead of returning them.
        """
        x = self._bind(keras.Model.predict, args, kwargs).arguments.get("x")
        self._check_data("predict", x, training=False)
        outputs = super().predict(*args, **kwargs)
        # Values only seen inside the steps (a dataset, accelerator arrays): NaN rows tell.
        safety.check_text_rows(self.text_encoder, outputs)
        return outputs

    def make_predict_function(self, force=False):
        # jit_compile left to "auto": predict compiles as encode_* does (timed on TensorFlow);
        # the setting is put back afterwards, so that fit and evaluate keep theirs.
        jit = None
        if getattr(self, "_keras_siglip_auto_jit", False) and (force or not self.predict_function):
            jit = backend.predict_jit_compile(self)
        if jit is None:
            return super().make_predict_function(force)
        kept, self.jit_compile = self.jit_compile, jit
        try:
            return super().make_predict_function(force)
        finally:
            self.jit_compile = kept

    def predict_step(self, *args):
        with safety.step(self):
            if not backend.predicts_through_graphs(self):
                return super().predict_step(*args)
            (data,) = args
            x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
            self.validate(x, together=True, values=False)
            with self._towers_checked():
                return backend.compiled_call(self, x)

    def _encode(self, tower, inputs, batch_size):
        leaves = list(inputs.values()) if isinstance(inputs, dict) else [inputs]
        if not all(backend.is_concrete(x) for x in leaves):
            return tower(inputs)
        if batch_size is None or num_examples(inputs) <= batch_size:
            return backend.compiled_call(tower, inputs)
        parts = [backend.compiled_call(tower, piece) for piece, _ in batches(inputs, batch_size)]
        return ops.concatenate(parts, axis=0)

    def logits(self, image_embeddings, text_embeddings):
        """`exp(logit_scale) * img @ txt.T + logit_bias` on normalised embeddings."""
        scale = ops.exp(ops.cast(self.logit_scale, "float32"))
        bias = ops.cast(self.logit_bias, "float32")
        return scale * ops.matmul(image_embeddings, ops.transpose(text_embeddings)) + bias

    def call(self, inputs, training=None):
        # Outside training torch records no autograd graph (`backend.inference_context`): the
        # outputs are plain tensors, `np.asarray` works as on JAX and TensorFlow.
        with backend.inference_context(safety.records_gradients(self, training), inputs):
            outputs = {}
            if "images" in inputs:
                outputs["image_embeddings"] = l2_normalize(
                    self.vision_encoder(inputs["images"]), self.l2_epsilon
                )
            if "token_ids" in inputs:
                outputs["text_embeddings"] = l2_normalize(
                    self.text_encoder(inputs["token_ids"]), self.l2_epsilon
                )
            if training:
                outputs["logit_scale"] = ops.cast(self.logit_scale, "float32")
                outputs["logit_bias"] = ops.cast(self.logit_bias, "float32")
            elif len(outputs) == 2:
                outputs["logits"] = self.logits(
                    outputs["image_embeddings"], outputs["text_embeddings"]
                )
            return outputs

    # ----------------------------------------------------------------------------------
    # Training with the sigmoid loss.

    def compile(self, optimizer="adam", loss=None, *, chunk_size=None, ring="auto", **kwargs):
        """Configure training. By default the loss is the sigmoid loss.

        The loss is computed from the model's own outputs (normalised
        embeddings, `logit_scale`, `logit_bias`): `fit` runs one forward pass
        per step and never forms a logits matrix it does not need.

        Args:
            optimizer: as for `keras.Model.compile`.
            loss: None (the sigmoid loss) or a `SigmoidLoss`. Other Keras
                losses are passed to `keras.Model.compile` unchanged.
            chunk_size: int or None. Chunk size of the single-device sigmoid
                loss (memory O(chunk x B) in forward and backward).
            ring: "auto", "ring", "bidir" or None. Under an active
                `keras.distribution` with a batch axis on JAX, "auto" and
                "ring" use the one-way ring loss, "bidir" the bidirectional
                one (per-device memory O(b^2)); None always uses the
                single-device loss. Asking for a ring where it cannot run
                raises an error at the first training step.

        The optimizer is wrapped in a `NonFiniteStepGuard` (a Keras `LossScaleOptimizer` at a
        constant scale of 1; a `LossScaleOptimizer` you pass is kept): a step whose gradients
        hold NaN or inf changes no weight, and `fit` stops with a `FloatingPointError`.
        `model.optimizer.inner_optimizer` is yours.
        """
        if ring not in ("auto", "ring", "bidir", None):
            raise ValueError(f"ring must be 'auto', 'ring', 'bidir' or None; received {ring!r}.")
        if loss is None:
            loss = SigmoidLoss(chunk_size=chunk_size)
        if kwargs.get("jit_compile", "auto") == "auto" and not kwargs.get("run_eagerly"):
            auto = backend.auto_jit_compile()
            if auto is not None:
                kwargs["jit_compile"] = auto
            self._keras_siglip_auto_jit = auto is not None
        else:
            self._keras_siglip_auto_jit = False
        self._sigmoid_loss = loss if isinstance(loss, SigmoidLoss) else None
        self._ring = ring
        super().compile(
            optimizer=safety.guarded_optimizer(optimizer),
            loss=None if self._sigmoid_loss else loss,
            **kwargs,
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        sigmoid = self._sigmoid_loss
        if sigmoid is None:
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        safety.check_no_weights("fit", sample_weight, None)
        missing = {"image_embeddings", "text_embeddings"} - set(y_pred)
        if missing:
            raise ValueError(
                "The sigmoid loss needs image and text embeddings of the same pairs: the "
                f"model outputs lack {sorted(missing)}. Train on a dict with both 'images' "
                "and 'token_ids'."
            )
        loss = self.training_loss(
            y_pred["image_embeddings"], y_pred["text_embeddings"], chunk_size=sigmoid.chunk_size
        )
        for extra in self.losses:
            loss = loss + ops.cast(extra, loss.dtype)
        return loss

    def training_loss(self, image_embeddings, text_embeddings, chunk_size=None):
        """The sigmoid loss of normalised embeddings with this model's scale and bias.

        Uses the ring loss when `compile(ring=...)` allows it and a JAX
        `keras.distribution` with a batch axis is active; otherwise the
        (optionally chunked) single-device loss.
        """
        ring = self._ring
        scale = ops.cast(self.logit_scale, "float32")
        bias = ops.cast(self.logit_bias, "float32")
        if ring in ("ring", "bidir") or (ring == "auto" and distributed.ring_available()):
            variant = "ring" if ring == "auto" else ring
            return distributed.ring_sigmoid_loss(
                image_embeddings, text_embeddings, scale, bias, variant=variant
            )
        return sigmoid_loss(image_embeddings, text_embeddings, scale, bias, chunk_size=chunk_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vision_encoder": keras.saving.serialize_keras_object(self.vision_encoder),
                "text_encoder": keras.saving.serialize_keras_object(self.text_encoder),
                "logit_scale_init": self.logit_scale_init,
                "logit_bias_init": self.logit_bias_init,
                "l2_epsilon": self.l2_epsilon,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("vision_encoder", "text_encoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """Build a model from a preset name or a checkpoint path.

        Args:
            preset: a name from `keras_siglip.list_presets()`, or a path to a
                `.keras` file, a transformers folder or a big_vision `.npz`.
            load_weights: bool. False builds the architecture with random
                weights (for a path: the architecture the checkpoint describes).
            **overrides: architecture arguments that replace the preset's
                (e.g. `image_size=(256, 320)`).
        """
        if not isinstance(preset, (str, os.PathLike)):
            raise TypeError(
                f"preset must be a preset name (str, see keras_siglip.list_presets()) or a path; "
                f"received {preset!r} ({type(preset).__name__})."
            )
        load_weights = check_bool("load_weights", load_weights, where="from_preset")
        if not load_weights and str(preset) not in PRESETS and registry.looks_like_checkpoint(
            str(preset)
        ):
            # The checkpoint's architecture (as it describes it, overrides applied), with
            # fresh random weights: read once for its sizes, then built anew from its config.
            loaded = registry.from_preset(cls, preset, load_weights=True, **overrides)
            return type(loaded).from_config(loaded.get_config())
        return registry.from_preset(cls, preset, load_weights=load_weights, **overrides)
