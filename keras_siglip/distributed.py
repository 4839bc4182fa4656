"""The SigLIP sigmoid loss over a batch sharded across devices: the ring of docs/loss.md.

Device d of the batch axis holds images and texts ``d*b ... (d+1)*b - 1`` (``b = B / D``). It scores its
own ``b x b`` block, which holds the only positives, then passes its text chunk to a neighbour ``D - 1``
times, scoring one all-negative ``b x b`` block per step, so no device ever holds more than ``b x b``
logits. The backward pass is docs/loss.md's closed form evaluated block by block (no logits are
saved): the gradient of a visiting text chunk travels with the chunk and one extra permute takes it
home.

Only the JAX backend has the collectives this needs (``keras.distribution`` has none of its own); on
one device, or on TensorFlow / PyTorch, use ``keras_siglip.losses.sigmoid_loss(..., chunk_size=...)``.
"""

import functools

import keras

from keras_siglip.losses import check_loss_inputs

VARIANTS = ("ring", "bidir")


def _batch_axis():
    """The active distribution's ``(keras DeviceMesh, batch axis name)``, or None."""
    if keras.backend.backend() != "jax":
        return None
    dist = keras.distribution.distribution()
    if dist is None:
        return None
    mesh = dist.device_mesh
    axis = dist.batch_dim_name
    if mesh is None or axis is None or axis not in mesh.axis_names:
        return None
    return mesh, axis


def ring_available():
    """True when `ring_sigmoid_loss` can run: JAX backend with a distribution that has a batch axis."""
    return _batch_axis() is not None


def batch_axis_size():
    """Number of devices on the batch axis of the active distribution, or None if there is none."""
    found = _batch_axis()
    if found is None:
        return None
    mesh, axis = found
    return mesh.shape[list(mesh.axis_names).index(axis)]


def _unavailable_reason():
    backend = keras.backend.backend()
    fallback = (
        "On one device use keras_siglip.losses.sigmoid_loss(image_embeddings, text_embeddings, "
        "logit_scale, logit_bias, chunk_size=...), which bounds memory by chunking."
    )
    if backend != "jax":
        return (
            f"ring_sigmoid_loss needs the JAX backend (the current backend is {backend!r}): Keras "
            "has no collectives, and keras.distribution is not usable on TensorFlow or PyTorch in "
            "Keras 3.15 (docs/loss.md, keras.distribution). " + fallback
        )
    dist = keras.distribution.distribution()
    if dist is None:
        return (
            "ring_sigmoid_loss needs an active keras.distribution (e.g. "
            "keras.distribution.set_distribution(keras.distribution.DataParallel())) whose device "
            "mesh has a batch axis; none is set. " + fallback
        )
    return (
        f"ring_sigmoid_loss needs a batch axis in the distribution's device mesh; batch_dim_name "
        f"is {dist.batch_dim_name!r} but the mesh axes are {tuple(dist.device_mesh.axis_names)}. "
        + fallback
    )


def ring_sigmoid_loss(image_embeddings, text_embeddings, logit_scale, logit_bias, *, variant="ring"):
    """SigLIP sigmoid loss over the batch axis of the active ``keras.distribution`` (JAX only).

    Returns the same value and gradients as the dense loss
    ``-(1/B) sum_ij log sigmoid(z_ij * (exp(logit_scale) * <x_i, y_j> + logit_bias))``
    (``z = +1`` on the diagonal, ``-1`` elsewhere), while each device works on one (``"ring"``) or
    two (``"bidir"``) ``b x b`` blocks of logits at a time, ``b = B / D``: per-device memory is
    O(b^2 + b E) in the forward and the backward pass (XLA's estimate: about 2 b^2 float32 for the
    ring, 2.3 b^2 for bidir). Exchanges text embeddings only (and, backward, their gradients).
    Differentiable by reverse mode (``jax.grad``), not forward mode.

    Args:
        image_embeddings: ``(B, E)`` L2-normalised image embeddings (the global batch; may be a
            traced, sharded array inside ``jit``).
        text_embeddings: ``(B, E)`` L2-normalised text embeddings; row i pairs with image i.
        logit_scale: log-temperature, scalar or shape ``(1,)``; the temperature is its exponential.
        logit_bias: bias, scalar or shape ``(1,)``.
        variant: ``"ring"`` (``D - 1`` one-way permutes, SigLIP paper §3.3) or ``"bidir"``
            (``ceil((D - 1) / 2)`` rounds exchanging with both neighbours, as open_clip's default).

    Returns:
        Scalar loss, float32 (float64 if the embeddings are float64).

    Example:
        ```python
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        loss = ring_sigmoid_loss(img, txt, model.logit_scale, model.logit_bias)
        ```
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; valid variants are {VARIANTS}.")
    found = _batch_axis()
    if found is None:
        raise RuntimeError(_unavailable_reason())
    mesh, axis = found

    import jax.numpy as jnp

    x = keras.ops.convert_to_tensor(image_embeddings)
    y = keras.ops.convert_to_tensor(text_embeddings)
    t_param = keras.ops.convert_to_tensor(logit_scale)
    b = keras.ops.convert_to_tensor(logit_bias)
    check_loss_inputs(x, y, t_param, b, caller="ring_sigmoid_loss")
    num_devices = mesh.shape[list(mesh.axis_names).index(axis)]
    batch = x.shape[0]
    if batch % num_devices:
        raise ValueError(
            f"The global batch B={batch} must be divisible by the D={num_devices} devices on the "
            f"batch axis {axis!r} of the device mesh."
        )

    # Accumulate in at least float32, whatever the embeddings' dtype (docs/loss.md, "Chunked form").
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
    loss_fn = _ring_loss_fn(mesh.backend_mesh, axis, variant, batch)
    return loss_fn(
        x.astype(dtype),
        y.astype(dtype),
        jnp.reshape(t_param, ()).astype(dtype),
        jnp.reshape(b, ()).astype(dtype),
    )


@functools.lru_cache(maxsize=None)
def _ring_loss_fn(jax_mesh, axis, variant, global_batch):
    """The ring loss ``(x, y, t_param, b) -> scalar`` on global arrays, with its closed-form VJP."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    num_devices = jax_mesh.shape[axis]
    rounds, rem = divmod(num_devices - 1, 2) if variant == "bidir" else (num_devices - 1, 0)

    def shift(a, k):
        """Send each device's ``a`` to the device ``k`` steps further along the batch axis."""
        k %= num_devices
        if k == 0:
            return a
        return lax.ppermute(a, axis, [(d, (d + k) % num_devices) for d in range(num_devices)])

    def logits(x, y, t, b):
        return t * jnp.matmul(x, y.T) + b

    # --- forward: B * loss = sum of softplus(l) over every block - sum of the positive logits.
    def local_loss(x, y, t_param, b):
        t = jnp.exp(t_param)

        def block(chunk):
            return jnp.sum(jax.nn.softplus(logits(x, chunk, t, b)))

        # Positive logits from row-wise dots: no b x b mask or diagonal gather.
        total = block(y) - jnp.sum(t * jnp.sum(x * y, axis=-1) + b)
        if variant == "ring":

            def step(_, carry):
                chunk, total = carry
                chunk = shift(chunk, 1)
                return chunk, total + block(chunk)

            _, total = lax.fori_loop(0, rounds, step, (y, total))
        else:

            def step(_, carry):
                right, left, total = carry
                right, left = shift(right, 1), shift(left, -1)
                return right, left, total + block(right) + block(left)

            right, _, total = lax.fori_loop(0, rounds, step, (y, y, total))
            if rem:  # D - 1 odd: one last one-way step covers the block opposite on the ring.
                total = total + block(shift(right, 1))
        return lax.psum(total, axis) / global_batch

    # --- backward: G = (sigmoid(l) - delta) * g / B recomputed one block at a time (docs/loss.md):
    # dx = t G y, dy = t G^T x, db = sum G. The -delta part only touches the own block and is
    # applied row-wise. dt_param = sum G (l - b) = t sum_ij G_ij <x_i, y_j> = sum_i <x_i, dx_i>,
    # so it needs no b x b term of its own.
    def local_grads(x, y, t_param, b, g):
        t = jnp.exp(t_param)
        scale = g / global_batch

        def block(chunk):
            grad = jax.nn.sigmoid(logits(x, chunk, t, b)) * scale
            return t * jnp.matmul(grad, chunk), t * jnp.matmul(grad.T, x), jnp.sum(grad)

        dx, dy_own, db = block(y)
        dx = dx - t * scale * y
        dy_own = dy_own - t * scale * x
        db = db - x.shape[0] * scale
        if variant == "ring":

            def step(_, carry):
                chunk, dchunk, dx, db = carry
                chunk, dchunk = shift(chunk, 1), shift(dchunk, 1)
                gx, gy, gb = block(chunk)
                return chunk, dchunk + gy, dx + gx, db + gb

            _, dchunk, dx, db = lax.fori_loop(0, rounds, step, (y, dy_own, dx, db))
            # After D - 1 steps the chunk here belongs to the next device: one step takes it home.
            dy = shift(dchunk, 1)
        else:

            def step(_, carry):
                right, dright, left, dleft, dx, db = carry
                right, dright = shift(right, 1), shift(dright, 1)
                left, dleft = shift(left, -1), shift(dleft, -1)
                rx, ry, rb = block(right)
                lx, ly, lb = block(left)
                return right, dright + ry, left, dleft + ly, dx + rx + lx, db + rb + lb

            init = (y, dy_own, y, jnp.zeros_like(y), dx, db)
            right, dright, _, dleft, dx, db = lax.fori_loop(0, rounds, step, init)
            if rem:
                right, dright = shift(right, 1), shift(dright, 1)
                gx, gy, gb = block(right)
                dright, dx, db = dright + gy, dx + gx, db + gb
            # Return each accumulator to its chunk's owner in one permute.
            dy = shift(dright, -(rounds + rem)) + shift(dleft, rounds)
        dt = jnp.sum(x * dx)
        return dx, dy, lax.psum(dt, axis), lax.psum(db, axis)

    P = jax.sharding.PartitionSpec
    rows = P(axis, None)
    # jit so that eager calls compile once instead of dispatching the loop op by op.
    forward = jax.jit(
        jax.shard_map(local_loss, mesh=jax_mesh, in_specs=(rows, rows, P(), P()), out_specs=P())
    )
    backward = jax.jit(
        jax.shard_map(
            local_grads,
            mesh=jax_mesh,
            in_specs=(rows, rows, P(), P(), P()),
            out_specs=(rows, rows, P(), P()),
        )
    )

    @jax.custom_vjp
    def ring_loss(x, y, t_param, b):
        return forward(x, y, t_param, b)

    def ring_loss_fwd(x, y, t_param, b):
        # Only the inputs are saved: O(b * E) per device, no logits.
        return forward(x, y, t_param, b), (x, y, t_param, b)

    def ring_loss_bwd(residuals, g):
        return backward(*residuals, g)

    ring_loss.defvjp(ring_loss_fwd, ring_loss_bwd)
    return ring_loss


# Variable paths of the large kernels, and which of their axes to shard over the model axis.
# Attention projections (W, H, hd) / (H, hd, W) split their width axis; MLP kernels split the
# hidden axis; the token embedding splits its width (vocabularies need not divide evenly).
_SHARDED_KERNELS = (
    (r".*/attention/(query|key|value)/kernel", 0, 3),
    (r".*/attention/out/kernel", 2, 3),
    (r".*/mlp/fc1/kernel", 1, 2),
    (r".*/mlp/fc2/kernel", 0, 2),
    (r".*/token_embedding/embeddings", 1, 2),
)


def siglip_layout_map(device_mesh, model_axis="model"):
    """A `keras.distribution.LayoutMap` that shards the towers' large kernels over `model_axis`.

    Attention and MLP kernels and the token embedding are split along one axis over the
    devices of `model_axis` (fully-sharded data parallel in spirit: each device stores a slice
    of every large kernel and XLA gathers it where it is used); everything else is replicated.
    Use it with `keras.distribution.ModelParallel(layout_map=..., batch_dim_name="batch")`
    before building the model. Dimensions must be divisible by the size of `model_axis`.

    Example:
        ```python
        mesh = keras.distribution.DeviceMesh((2, 4), ("model", "batch"))
        layout = siglip_layout_map(mesh)
        keras.distribution.set_distribution(
            keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch"))
        model = SigLIP.from_preset("siglip2_base_patch16_224", load_weights=False)
        ```
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"The device mesh has axes {tuple(device_mesh.axis_names)}; no {model_axis!r} axis "
            "to shard kernels over."
        )
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axis, rank in _SHARDED_KERNELS:
        axes = [None] * rank
        axes[axis] = model_axis
        layout_map[pattern] = tuple(axes)
    return layout_map
