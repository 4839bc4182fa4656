"""The keras-siglip adapter: the kit's stages from `return_intermediates` on the current backend,
and the deliberate mistakes of `BROKEN_VARIANTS` applied to a model in place."""

import math

import numpy as np
from keras import ops

from keras_siglip.backend import value_and_grads
from keras_siglip.conformance.adapters import check_variant, image_size
from keras_siglip.conformance.verify import load_kit
from keras_siglip.convert import load_big_vision
from keras_siglip.losses import sigmoid_loss
from keras_siglip.models import (
    SigLIPNaFlexVisionEncoder,
    SigLIPVisionEncoder,
    l2_normalize,
)


def keras_model(kit):
    """A `SigLIP` holding the kit's parameters (`load_big_vision`)."""
    kit = load_kit(kit)
    return load_big_vision(dict(kit["params"]), image_size=image_size(kit))


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def keras_fn(kit, model=None):
    """`fn(params, inputs)` running keras-siglip (current backend) with `return_intermediates`.

    `model` may be a prepared (e.g. deliberately broken) `SigLIP`; by default one is built from
    the kit's parameters.
    """

    def fn(params, inputs):
        nonlocal model
        if model is None:
            model = keras_model(kit)
        stages = {}
        if "patches" in inputs:
            image_in = {k: inputs[k] for k in ("patches", "patch_mask", "spatial_shapes")}
        else:
            image_in = inputs["images"]
        for key, value in model.vision_encoder(image_in, return_intermediates=True).items():
            stages[f"img/{key}"] = _np(value)
        text = model.text_encoder
        ids = ops.convert_to_tensor(inputs["token_ids"], "int32")
        stages["txt/embedded"] = _np(text.token_embedding(ids))
        for key, value in text(ids, return_intermediates=True).items():
            # keras-siglip's "embedded" already holds the position embedding.
            stages["txt/with_posemb" if key == "embedded" else f"txt/{key}"] = _np(value)
        zimg = l2_normalize(ops.convert_to_tensor(stages["img/pooled"]), model.l2_epsilon)
        ztxt = l2_normalize(ops.convert_to_tensor(stages["txt/pooled"]), model.l2_epsilon)
        stages["zimg"], stages["ztxt"] = _np(zimg), _np(ztxt)
        stages["logits"] = _np(model.logits(zimg, ztxt))
        t = _np(ops.reshape(model.logit_scale, ()))
        b = _np(ops.reshape(model.logit_bias, ()))
        loss, grads = value_and_grads(sigmoid_loss, stages["zimg"], stages["ztxt"], t, b)
        stages["loss"] = loss
        stages["grad_zimg"], stages["grad_ztxt"] = grads[0], grads[1]
        stages["grad_t_param"] = np.reshape(grads[2], ())
        stages["grad_b"] = np.reshape(grads[3], ())
        return stages

    return fn


def _parts(model):
    """`(mlps, layer_norms, map_heads)` of a `SigLIP`, from the towers' public attributes."""
    mlps, norms, heads = [], [], []
    for tower in (model.vision_encoder, model.text_encoder):
        for block in tower.blocks:
            mlps.append(block.mlp)
            norms += [block.layer_norm_1, block.layer_norm_2]
        norms.append(tower.encoder_norm)
        if isinstance(tower, (SigLIPVisionEncoder, SigLIPNaFlexVisionEncoder)):
            heads.append(tower.head)
            mlps.append(tower.head.mlp)
            norms.append(tower.head.layer_norm)
    return mlps, norms, heads


def _override_call(layer, call, undo):
    """Replace `layer.call` on this instance only; `undo` gets the step restoring the class's."""
    layer.call = call
    undo.append(lambda: delattr(layer, "call"))


def _exact_gelu(mlp, undo):
    def call(x):
        return mlp.fc2(ops.gelu(mlp.fc1(x), approximate=False))

    _override_call(mlp, call, undo)


def _set_epsilon(norm, epsilon, undo):
    undo.append(lambda eps=norm.epsilon: setattr(norm, "epsilon", eps))
    norm.epsilon = epsilon


def _map_residual(head, undo):
    attention = head.attention

    def call(query, x, key_mask=None):
        return type(attention).call(attention, query, x, key_mask=key_mask) + query

    _override_call(attention, call, undo)


def _map_unscaled(head, undo):
    """Scale the MAP head's projected queries by sqrt(head_dim), cancelling the 1/sqrt(d)."""
    dense = head.attention.query
    factor = math.sqrt(head.probe.shape[-1] // head.num_heads)

    def call(x):
        return type(dense).call(dense, x) * factor

    _override_call(dense, call, undo)


def break_keras_model(model, variant):
    """Give a keras-siglip model one deliberate mistake, in place; returns a function undoing it.

    `variant` (see `BROKEN_VARIANTS`): "gelu_erf" (exact GELU in every MLP), "ln_eps" (LayerNorm
    eps 1e-5 everywhere), "map_residual" (the MAP head adds the probe back to its attention
    output, as a standard block would; SigLIP's MAP head has no residual there) or
    "map_unscaled" (MAP attention queries scaled by sqrt(head_dim), i.e. logits without the
    1/sqrt(head_dim) scale).
    """
    check_variant(variant)
    mlps, norms, heads = _parts(model)
    undo = []
    if variant == "gelu_erf":
        for mlp in mlps:
            _exact_gelu(mlp, undo)
    elif variant == "ln_eps":
        for norm in norms:
            _set_epsilon(norm, 1e-5, undo)
    else:
        for head in heads:
            (_map_residual if variant == "map_residual" else _map_unscaled)(head, undo)

    def restore():
        for step in reversed(undo):
            step()

    return restore
