"""The SigLIP text tower: unmasked, non-causal transformer pooled at the last position."""

import keras
from keras import ops

from keras_siglip import backend
from keras_siglip.layers import Linear, PositionEmbedding
from keras_siglip.models import safety, validation
from keras_siglip.models.tower import Tower


@keras.saving.register_keras_serializable(package="keras_siglip")
class SigLIPTextEncoder(Tower):
    """SigLIP text tower for `(B, L)` token ids.

    Token embedding + learned position embedding, `depth` pre-LN blocks
    with **no attention mask** (padding is attended to, by design), a final
    LayerNorm, then the token at the **last position** goes through a dense
    head. The last position is EOS for SigLIP 1 (padding is EOS) and usually
    PAD for SigLIP 2; both are what the checkpoints were trained with.

    Args:
        vocabulary_size: int. Vocabulary `V`.
        sequence_length: int. The trained text length `L` (inputs must have
            exactly this length).
        width: int. Token width.
        depth: int. Number of encoder blocks.
        mlp_dim: int. MLP hidden width.
        num_heads: int. Attention heads.
        embed_dim: int or None. Output width of the head; defaults to
            `width`. g-opt pairs a 1152-wide text tower with `embed_dim=1536`.
        use_head: bool. False for checkpoints without a text head (SigLIP 1
            So400m/16-i18n): the pooled token is the embedding.
        layer_norm_epsilon: float. Defaults to 1e-6.

    Call arguments:
        token_ids: int `(B, L)`.
        return_tokens: bool. Also return the final-LN tokens:
            `{"tokens": (B, L, width), "pooled": (B, embed_dim)}`.
        return_intermediates: bool. Return a dict of every stage.
        training: bool or None. Unless True (or an input requires a gradient), a torch call
            records no autograd graph, so `np.asarray(output)` works as on JAX and TF.

    Example:
    >>> tower = SigLIPTextEncoder(101, 16, width=48, depth=2, mlp_dim=96,
    ...                           num_heads=3)
    >>> tower(np.ones((2, 16), "int32")).shape
    (2, 48)
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        width,
        depth,
        mlp_dim,
        num_heads,
        embed_dim=None,
        use_head=True,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.sequence_length = int(sequence_length)
        self.width = int(width)
        self.depth = int(depth)
        self.mlp_dim = int(mlp_dim)
        self.num_heads = int(num_heads)
        self.use_head = bool(use_head)
        if not self.use_head and embed_dim not in (None, self.width):
            raise ValueError(
                f"A text tower without a head outputs its width ({self.width}); "
                f"embed_dim={embed_dim} needs use_head=True."
            )
        self.embed_dim = int(embed_dim) if embed_dim is not None else self.width
        self.layer_norm_epsilon = float(layer_norm_epsilon)

        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.width,
            embeddings_initializer=keras.initializers.RandomNormal(
                stddev=1.0 / self.width**0.5
            ),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            self.sequence_length, dtype=self.dtype_policy, name="position_embedding"
        )
        self._make_encoder()
        self.head = (
            Linear(self.embed_dim, dtype=self.dtype_policy, name="head")
            if self.use_head
            else None
        )
        self.build((None, self.sequence_length))

    def build(self, input_shape):
        if self.built:
            return
        self.token_embedding.build(input_shape)
        token_shape = (input_shape[0], self.sequence_length, self.width)
        self.position_embedding.build(token_shape)
        self.encoder.build(token_shape)
        if self.head is not None:
            self.head.build((input_shape[0], self.width))
        self.built = True

    def validate(self, token_ids, values=True):
        """Raise a ValueError naming the problem unless `token_ids` fit this tower.

        Shape and dtype always; with `values` and host-resident ids also that every id is in the
        vocabulary (other ids are clamped in `call` and their rows come out NaN).
        """
        validation.check_token_ids(self, token_ids, values)

    def check_outputs(self, outputs):
        """Rows of `predict` outputs that came out NaN: token ids outside the vocabulary."""
        safety.check_text_rows(self, {"text_embeddings": outputs})

    def call(self, token_ids, return_tokens=False, return_intermediates=False, training=None):
        # Outside training torch records no autograd graph (`backend.inference_context`).
        with backend.inference_context(safety.records_gradients(self, training), token_ids):
            stages = {}
            # Concrete ids were checked by `validate`; ids only known inside a compiled step are
            # clamped here and their rows get a NaN embedding below, which `SigLIP.predict` and
            # `fit` report (the same answer on every backend instead of NaN, garbage or a crash).
            ids = ops.cast(token_ids, "int32")
            in_vocabulary = ops.all(
                ops.logical_and(ids >= 0, ids < self.vocabulary_size), axis=1, keepdims=True
            )
            x = self.token_embedding(ops.clip(ids, 0, self.vocabulary_size - 1))
            x = self.position_embedding(x)
            stages["embedded"] = x
            x = self._run_encoder(x, stages, return_intermediates=return_intermediates)
            # Last-position pooling, not argmax(EOS): see the class docstring.
            pooled = x[:, -1, :]
            stages["pre_logits"] = pooled
            if self.head is not None:
                pooled = self.head(pooled)
            pooled = ops.where(in_vocabulary, pooled, ops.cast(float("nan"), pooled.dtype))
            stages["pooled"] = pooled
            if return_intermediates:
                return stages
            if return_tokens:
                return {"tokens": x, "pooled": pooled}
            return pooled

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "width": self.width,
                "depth": self.depth,
                "mlp_dim": self.mlp_dim,
                "num_heads": self.num_heads,
                "embed_dim": self.embed_dim,
                "use_head": self.use_head,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
