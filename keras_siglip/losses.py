"""The SigLIP sigmoid loss, dense or chunked with a closed-form backward pass.

For normalised embeddings `x_i`, `y_j` and `l_ij = exp(logit_scale) <x_i, y_j> + logit_bias`:

    L = -(1/B) sum_ij log sigmoid(z_ij l_ij),   z_ii = +1, z_ij = -1 otherwise.

Normalised by B (not B^2). Since softplus(-l) = softplus(l) - l, the sum is
`sum_ij softplus(l_ij) - sum_i l_ii`: no label matrix is needed.

The chunked form walks over row blocks of `chunk_size` images. Its gradient
is written in closed form: with `G = (sigmoid(l) - I) / B`,
`dx = t G y`, `dy = t G^T x`, `db = sum G`, `d logit_scale = sum G (l - b)`.
The backward pass recomputes each block from the inputs, so neither pass
ever holds more than `chunk_size x B` logits (autodiff of a chunked forward
would save every block, i.e. all B^2 logits).
"""

import keras
from keras import ops

from keras_siglip.arguments import check_int


def _softplus(u):
    # max(u, 0) + log1p(exp(-|u|)): stable for large |u| on every backend.
    return ops.maximum(u, 0.0) + ops.log1p(ops.exp(-ops.abs(u)))


def check_loss_inputs(image_embeddings, text_embeddings, logit_scale=None, logit_bias=None, *,
                      chunk_size=None, caller="sigmoid_loss"):
    """Raise an error naming the problem unless the inputs form a square batch.

    Shared by `sigmoid_loss` and `keras_siglip.distributed.ring_sigmoid_loss`: embeddings
    `(B, D)` of the same shape; `logit_scale` and `logit_bias`, when given, scalars or `(1,)`;
    `chunk_size` None or a positive int (a `TypeError` for another type, as everywhere).
    """
    img_shape = tuple(image_embeddings.shape)
    txt_shape = tuple(text_embeddings.shape)
    if len(img_shape) != 2 or len(txt_shape) != 2:
        raise ValueError(
            f"{caller} expects image_embeddings and text_embeddings of shape (batch, dim) = "
            f"(B, E); received {img_shape} and {txt_shape}."
        )
    if 0 in (img_shape[0], txt_shape[0]):
        raise ValueError(
            f"{caller} received an empty batch (image_embeddings {img_shape}, text_embeddings "
            f"{txt_shape}): the loss is a mean over the batch and is undefined for 0 examples. "
            "Pass at least one image-text pair (drop empty batches from the data)."
        )
    if img_shape != txt_shape:
        raise ValueError(
            f"{caller} needs a square batch: image i is the positive of text i, so "
            f"image_embeddings and text_embeddings must have the same shape; received "
            f"{img_shape} and {txt_shape}."
        )
    for name, value in (("logit_scale", logit_scale), ("logit_bias", logit_bias)):
        shape = tuple(getattr(value, "shape", ()))
        if value is not None and shape not in ((), (1,)):
            raise ValueError(f"{name} must be a scalar or shape (1,); received shape {shape}.")
    check_int("chunk_size", chunk_size, allow_none=True, where=caller)


def _as_float32(*values):
    return [ops.cast(ops.convert_to_tensor(v), "float32") for v in values]


def _dense_loss(x, y, logit_scale, logit_bias):
    batch = ops.shape(x)[0]
    logits = ops.exp(logit_scale) * ops.matmul(x, ops.transpose(y)) + logit_bias
    diagonal = ops.exp(logit_scale) * ops.sum(x * y, axis=-1) + logit_bias
    total = ops.sum(_softplus(logits)) - ops.sum(diagonal)
    return total / ops.cast(batch, "float32")


def _padded_chunked_loss(x, y, logit_scale, logit_bias, chunk_size):
    """The chunked loss for a batch size known only at run time (a TensorFlow graph's tail batch).

    The image rows are zero-padded to a whole number of `chunk_size` blocks and the padded rows
    are masked out of every block, so all blocks have one static shape. The softplus sum has the
    closed-form backward pass of `_chunked_loss`; the positives (`O(B D)`) use autodiff.
    """
    batch = ops.shape(x)[0]
    dim = x.shape[1]
    n = ops.cast(batch, "float32")
    num_chunks = (batch + chunk_size - 1) // chunk_size
    x_padded = ops.pad(x, [[0, num_chunks * chunk_size - batch], [0, 0]])
    rows = ops.arange(chunk_size)

    def block(x_padded, i):
        start = i * chunk_size
        xb = ops.slice(x_padded, (start, 0), (chunk_size, dim))
        return start, xb, ops.cast(ops.less(rows + start, batch), "float32")[:, None]

    @ops.custom_gradient
    def softplus_sum(x_padded, y, logit_scale, logit_bias):
        t = ops.exp(logit_scale)

        def add_block(i, total):
            _, xb, valid = block(x_padded, i)
            logits = t * ops.matmul(xb, ops.transpose(y)) + logit_bias
            return total + ops.sum(valid * _softplus(logits))

        total = ops.fori_loop(0, num_chunks, add_block, ops.zeros((), "float32"))

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args

            def grad_block(i, carry):
                dx, dy, p_sum, p_l_sum = carry
                start, xb, valid = block(x_padded, i)
                cosines = ops.matmul(xb, ops.transpose(y))
                p = valid * ops.sigmoid(t * cosines + logit_bias)
                dx = ops.slice_update(dx, (start, 0), ops.matmul(p, y))
                dy = dy + ops.matmul(ops.transpose(p), xb)
                return dx, dy, p_sum + ops.sum(p), p_l_sum + ops.sum(p * cosines)

            zero = ops.zeros((), "float32")
            dx, dy, p_sum, p_l_sum = ops.fori_loop(
                0, num_chunks, grad_block, (ops.zeros_like(x_padded), ops.zeros_like(y), zero, zero)
            )
            return (
                upstream * t * dx,
                upstream * t * dy,
                ops.reshape(upstream * t * p_l_sum, ops.shape(logit_scale)),
                ops.reshape(upstream * p_sum, ops.shape(logit_bias)),
            )

        return total, grad

    positives = ops.sum(ops.exp(logit_scale) * ops.sum(x * y, axis=-1) + logit_bias)
    return (softplus_sum(x_padded, y, logit_scale, logit_bias) - positives) / n


def _chunked_loss(x, y, logit_scale, logit_bias, chunk_size):
    batch, dim = x.shape
    if batch is None:
        return _padded_chunked_loss(x, y, logit_scale, logit_bias, chunk_size)
    full_chunks, tail = divmod(batch, chunk_size)

    # The blocks run in a loop (`ops.fori_loop`: a while loop on JAX and
    # TensorFlow) rather than unrolled, so the compiler cannot schedule all
    # blocks side by side and hold every block's logits at once.
    def row_blocks(step, carry):
        """Apply `step(carry, start, size)` to every row block: the full ones, then the tail."""
        if full_chunks:
            carry = ops.fori_loop(
                0,
                full_chunks,
                lambda i, c: step(c, i * chunk_size, chunk_size),
                carry,
            )
        if tail:
            carry = step(carry, full_chunks * chunk_size, tail)
        return carry

    @ops.custom_gradient
    def loss_fn(x, y, logit_scale, logit_bias):
        t = ops.exp(logit_scale)

        def add_block(total, start, size):
            xb = ops.slice(x, (start, 0), (size, dim))
            logits = t * ops.matmul(xb, ops.transpose(y)) + logit_bias
            return total + ops.sum(_softplus(logits))

        total = row_blocks(add_block, ops.zeros((), "float32"))
        # The positives: sum_i l_ii over the whole batch.
        total = total - ops.sum(t * ops.sum(x * y, axis=-1) + logit_bias)
        loss = total / batch

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            t = ops.exp(logit_scale)

            def grad_block(carry, start, size):
                dx, dy, p_sum, p_l_sum = carry
                xb = ops.slice(x, (start, 0), (size, dim))
                cosines = ops.matmul(xb, ops.transpose(y))  # <x_i, y_j>
                p = ops.sigmoid(t * cosines + logit_bias)
                dx = ops.slice_update(dx, (start, 0), ops.matmul(p, y))
                dy = dy + ops.matmul(ops.transpose(p), xb)
                return dx, dy, p_sum + ops.sum(p), p_l_sum + ops.sum(p * cosines)

            zero = ops.zeros((), "float32")
            dx, dy, p_sum, p_l_sum = row_blocks(
                grad_block, (ops.zeros_like(x), ops.zeros_like(y), zero, zero)
            )
            # The -I part of G contributes -y_i to dx_i and -x_i to dy_i.
            scale = upstream / batch
            d_x = scale * t * (dx - y)
            d_y = scale * t * (dy - x)
            d_bias = scale * (p_sum - batch)
            d_scale = scale * t * (p_l_sum - ops.sum(x * y))
            return (
                d_x,
                d_y,
                ops.reshape(d_scale, ops.shape(logit_scale)),
                ops.reshape(d_bias, ops.shape(logit_bias)),
            )

        return loss, grad

    return loss_fn(x, y, logit_scale, logit_bias)


def sigmoid_loss(
    image_embeddings, text_embeddings, logit_scale, logit_bias, *, chunk_size=None
):
    """The SigLIP sigmoid loss of a square batch of normalised embeddings.

    Args:
        image_embeddings: `(B, D)` L2-normalised image embeddings.
        text_embeddings: `(B, D)` L2-normalised text embeddings; text i is
            the positive of image i, every other pair a negative.
        logit_scale: scalar or `(1,)`: the **log**-temperature
            (`t = exp(logit_scale)`, initialised to `log 10`).
        logit_bias: scalar or `(1,)`: the bias `b` (initialised to -10).
        chunk_size: int or None. With an int, logits are formed `chunk_size`
            rows at a time and the backward pass is computed in closed form,
            so forward and backward memory is O(chunk_size x B) instead of
            O(B^2). The result and gradients are those of the dense loss.

    Returns:
        Scalar float32 loss, `-(1/B) sum_ij log sigmoid(z_ij l_ij)`.

    Example:
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]]); y = np.array([[0.8, 0.6], [0.0, 1.0]])
    >>> float(sigmoid_loss(x, y, np.log(10.0), -10.0))  # doctest: +ELLIPSIS
    2.38345...
    """
    check_loss_inputs(
        image_embeddings, text_embeddings, logit_scale, logit_bias, chunk_size=chunk_size
    )
    x, y, scale, bias = _as_float32(
        image_embeddings, text_embeddings, logit_scale, logit_bias
    )
    if chunk_size is None or (x.shape[0] is not None and chunk_size >= x.shape[0]):
        return _dense_loss(x, y, scale, bias)
    return _chunked_loss(x, y, scale, bias, chunk_size)


@keras.saving.register_keras_serializable(package="keras_siglip")
class SigmoidLoss(keras.losses.Loss):
    """`sigmoid_loss` as a `keras.losses.Loss`.

    `y_true` is ignored (the positives are the diagonal of the batch);
    `y_pred` is a dict with `image_embeddings`, `text_embeddings` (both
    normalised), `logit_scale` (log-temperature) and `logit_bias`, as
    returned by `SigLIP` when called with `training=True`.

    Args:
        chunk_size: int or None. See `sigmoid_loss`.

    Example:
    >>> loss = SigmoidLoss(chunk_size=256)
    """

    def __init__(self, chunk_size=None, name="sigmoid_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.chunk_size = check_int("chunk_size", chunk_size, allow_none=True, where="SigmoidLoss")

    def __call__(self, y_true, y_pred, sample_weight=None):
        # The loss is already a scalar over the batch and ignores y_true (the
        # positives are the diagonal), so Keras' per-sample reduction and its
        # conversion of y_true (None in SigLIP training) do not apply.
        if sample_weight is not None:
            raise ValueError("SigmoidLoss does not support sample_weight.")
        return self.call(y_true, y_pred)

    def call(self, y_true, y_pred):
        missing = {
            "image_embeddings",
            "text_embeddings",
            "logit_scale",
            "logit_bias",
        } - set(y_pred)
        if missing:
            raise ValueError(
                f"SigmoidLoss needs y_pred entries {sorted(missing)}; received keys "
                f"{sorted(y_pred)}. Call the SigLIP model with training=True or pass them."
            )
        return sigmoid_loss(
            y_pred["image_embeddings"],
            y_pred["text_embeddings"],
            y_pred["logit_scale"],
            y_pred["logit_bias"],
            chunk_size=self.chunk_size,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"chunk_size": self.chunk_size})
        return config
