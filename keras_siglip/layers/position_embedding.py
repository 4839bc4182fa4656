"""Learned absolute position embedding, stored as big_vision's `(1, N, D)`."""

import keras


@keras.saving.register_keras_serializable(package="keras_siglip")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned `(1, N, D)` table to `(B, N, D)` tokens.

    There is no CLS token. The sequence length must equal the table's: a
    different image size needs the table resized first (see
    `keras_siglip.layers.resize_position_embedding`).

    Args:
        sequence_length: int. Number of positions `N`.
        initializer: initializer for the table. Defaults to N(0, 1/sqrt(D))
            as in big_vision and transformers.

    Example:
    >>> pos = PositionEmbedding(sequence_length=9)
    >>> pos(np.zeros((2, 9, 32))).shape
    (2, 9, 32)
    """

    def __init__(self, sequence_length, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer) if initializer else None

    def build(self, input_shape):
        width = input_shape[-1]
        initializer = self.initializer or keras.initializers.RandomNormal(
            stddev=1.0 / width**0.5
        )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(1, self.sequence_length, width),
            initializer=initializer,
        )

    def call(self, x):
        length = x.shape[1]
        if length is not None and length != self.sequence_length:
            raise ValueError(
                f"PositionEmbedding '{self.name}' has {self.sequence_length} "
                f"positions but received {length} tokens (input shape "
                f"{tuple(x.shape)}). Use inputs of the trained size or resize "
                "the position embedding."
            )
        return x + keras.ops.cast(self.embeddings, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer)
                if self.initializer
                else None,
            }
        )
        return config
