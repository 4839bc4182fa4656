"""What the three towers share: the encoder stack and validation before every call."""

import keras

from keras_siglip.layers import Encoder


class Tower(keras.Model):
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
        for name, value in (("finite", finite), ("image_range", image_range)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be True, False or None; received {value!r}.")
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

    def validate(self, inputs):
        """Raise a ValueError naming the problem unless `inputs` fit this tower."""
        raise NotImplementedError

    def __call__(self, inputs, *args, **kwargs):
        # `SigLIP.__call__` validates its whole input first and marks its towers as checked.
        if not self.__dict__.get("_keras_siglip_checked"):
            self.validate(inputs)
        return super().__call__(inputs, *args, **kwargs)
