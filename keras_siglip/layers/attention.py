"""Multi-head dot-product attention with separate q/k/v/out weights and a key mask."""

import keras
from keras import ops

from keras_siglip.backend import dot_product_attention
from keras_siglip.layers.linear import Linear


@keras.saving.register_keras_serializable(package="keras_siglip")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention in big_vision's weight layout.

    The query, key and value kernels are `(W, H, hd)` with biases `(H, hd)`;
    the output kernel is `(H, hd, W)` with bias `(W,)`. These are exactly
    flax's `MultiHeadDotProductAttention` shapes, so checkpoints copy in
    without transposes. The attention logits and the softmax are float32
    whatever the compute dtype (see `keras_siglip.backend.dot_product_attention`).

    Args:
        num_heads: int. Number of heads `H`; the head width is `W // H`.
        head_dim: int or None. Width of one head; by default `W // H`.

    Call arguments:
        query: `(B, T, W)`.
        value: `(B, S, W)` or None (self-attention). Used as key and value.
        key_mask: bool `(B, S)` or None. False marks keys (padded NaFlex
            patches) that no query may attend to.

    Example:
    >>> mha = MultiHeadAttention(num_heads=4)
    >>> mha(np.zeros((2, 7, 32))).shape
    (2, 7, 32)
    """

    def __init__(self, num_heads, head_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.head_dim = head_dim
        self.query = self.key = self.value = self.out = None

    def build(self, query_shape, value_shape=None):
        width = query_shape[-1]
        head_dim = self.head_dim or width // self.num_heads
        if self.head_dim is None and width % self.num_heads:
            raise ValueError(
                f"Width {width} is not divisible by num_heads={self.num_heads}; "
                "pass head_dim explicitly."
            )
        self._head_dim = head_dim
        value_shape = query_shape if value_shape is None else value_shape

        def projection(name):
            return Linear((self.num_heads, head_dim), dtype=self.dtype_policy, name=name)

        self.query = projection("query")
        self.key = projection("key")
        self.value = projection("value")
        self.out = Linear(width, input_axes=2, dtype=self.dtype_policy, name="out")
        self.query.build(query_shape)
        self.key.build(value_shape)
        self.value.build(value_shape)
        self.out.build((query_shape[0], query_shape[1], self.num_heads, head_dim))

    def call(self, query, value=None, key_mask=None):
        value = query if value is None else value
        q = self.query(query)
        k = self.key(value)
        v = self.value(value)
        mask = None
        if key_mask is not None:
            # (B, S) -> (B, 1, 1, S): one mask for every head and query.
            mask = ops.cast(key_mask, "bool")[:, None, None, :]
        # In the compute dtype; the kernel keeps the logits and the softmax in float32.
        return self.out(dot_product_attention(q, k, v, mask))

    def compute_output_shape(self, query_shape, value_shape=None):
        return query_shape

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "head_dim": self.head_dim})
        return config
