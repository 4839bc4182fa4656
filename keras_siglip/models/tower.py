"""What the three towers share: the encoder stack and validation before every call."""

import keras

from keras_siglip.arguments import check_optional_bool
from keras_siglip.layers import Encoder
from keras_siglip.models import safety


class Tower(safety.KerasLoops, keras.Model):
    """Base class of `SigLIPVisionEncoder`, `SigLIPNaFlexVisionEncoder` and `SigLIPTextEncoder`.

    A subclass sets `depth`, `num_heads`, `mlp_dim` and `layer_norm_epsilon`, calls
    `_make_encoder()` in its `__init__`, and implements `validate(inputs)`, which every call
    runs before `call` (compiled paths call it themselves before tracing).

    `set_input_checks` turns the optional value checks on or off (see
    `keras_siglip.models.validation`): `check_image_range` (default on) and `check_finite`
    (default off).
    """

    check_finite = False
    check_image_range = True

    def set_input_checks(self, finite=None, image_range=None):
        """Turn the value checks of this tower's inputs on or off; None keeps a setting.

        Args:
            finite: bool. Refuse host-resident images holding NaN or inf (off by default: it is
                a pass over every pixel).
            image_range: bool. Refuse host-resident images beyond [-1.5, 1.5] (on by default).
        """
        finite = check_optional_bool("finite", finite, where="set_input_checks")
        image_range = check_optional_bool("image_range", image_range, where="set_input_checks")
        if finite is not None:
            self.check_finite = finite
        if image_range is not None:
            self.check_image_range = image_range
        return self

    def _make_encoder(self):
        self.encoder = Encoder(
            self.depth,
            self.num_heads,
            self.mlp_dim,
            self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="encoder",
        )

    def _run_encoder(self, x, stages, key_mask=None, return_intermediates=False):
        """The encoder stack, adding `blockNN/...` and `encoded` to `stages`."""
        if return_intermediates:
            x, inner = self.encoder(x, key_mask=key_mask, return_intermediates=True)
            stages.update(inner)
        else:
            x = self.encoder(x, key_mask=key_mask)
        stages["encoded"] = x
        return x

    @property
    def blocks(self):
        """The encoder blocks (`self.encoder.blocks`)."""
        return self.encoder.blocks

    @property
    def encoder_norm(self):
        """The final LayerNorm (`self.encoder.norm`)."""
        return self.encoder.norm

    def validate(self, inputs, values=True):
        """Raise a ValueError naming the problem unless `inputs` fit this tower.

        `values=False` checks shapes and dtypes only (see `keras_siglip.models.validation`).
        """
        raise NotImplementedError

    def __call__(self, inputs, *args, **kwargs):
        # `SigLIP.__call__` validates its whole input first and marks its towers as checked.
        if not self.__dict__.get("_keras_siglip_checked"):
            self.validate(inputs, values=not safety.in_step(self))
        return super().__call__(inputs, *args, **kwargs)

    # A tower used alone with Keras' loops: as `SigLIP`, the data is checked once up front and
    # the steps check shapes only, so every backend gives the same answer.

    def _check_data(self, x):
        inputs = safety.data_inputs(x)
        if inputs is not None:
            self.validate(inputs)

    def fit(self, x=None, *args, **kwargs):
        self._check_data(x)
        with safety.fitting(self):
            return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x)
        outputs = super().predict(x, *args, **kwargs)
        self.check_outputs(outputs)  # values only seen inside the steps (a dataset, a GPU array)
        return outputs

    def check_outputs(self, outputs):
        """After `predict`: raise if the outputs show bad inputs (see the text tower)."""
