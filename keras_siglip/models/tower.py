"""What the three towers share: the encoder stack and validation before every call."""

import keras

from keras_siglip.layers import Encoder


class Tower(keras.Model):
    """Base class of `SigLIPVisionEncoder`, `SigLIPNaFlexVisionEncoder` and `SigLIPTextEncoder`.

    A subclass sets `depth`, `num_heads`, `mlp_dim` and `layer_norm_epsilon`, calls
    `_make_encoder()` in its `__init__`, and implements `validate(inputs)`, which every call
    runs before `call` (compiled paths call it themselves before tracing).
    """

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
        self.validate(inputs)
        return super().__call__(inputs, *args, **kwargs)
