"""Fixed-resolution image tower, text tower and the two-tower head (docs/architecture.md).

Each tower loops over the examples of the batch and returns a dict of intermediates named like
big_vision's (`block00/+sa` ...), stacked over the batch.
"""

import math

import numpy as np

from ._params import Params, f64
from .layers import encoder, map_head, stack_examples
from .loss import l2_normalize, sigmoid_loss
from .naflex import naflex_image_tower


def patch_embed_conv(image, kernel, bias):
    """Conv2D with kernel `(p, p, C, W)`, stride p, VALID: `(H, W_img, C) -> (H//p, W_img//p, W)`.

    Bottom and right leftover pixels are dropped, as with VALID padding.
    """
    ph, pw = kernel.shape[0], kernel.shape[1]
    gh, gw = image.shape[0] // ph, image.shape[1] // pw
    out = np.zeros((gh, gw, kernel.shape[-1]))
    for r in range(gh):
        for c in range(gw):
            patch = image[r * ph:(r + 1) * ph, c * pw:(c + 1) * pw, :]
            out[r, c] = np.tensordot(patch, kernel, axes=3) + bias
    return out


def image_tower(params, images):
    """Fixed-resolution SigLIP image tower.

    Args:
        params: flat big_vision dict (`img/...`).
        images: `(B, H, W, 3)`, values in [-1, 1].

    Returns:
        dict with `stem (B,h,w,W)`, `with_posemb (B,N,W)`, `block{i:02d}/{sa,+sa,mlp,+mlp} (B,N,W)`,
        `encoded (B,N,W)` (final LayerNorm) and `pooled (B,W)` (MAP head: the image embedding).
    """
    p = Params(params)
    images = f64(images)
    kernel, bias = p.get("img/embedding/kernel"), p.get("img/embedding/bias")
    posemb = p.get("img/pos_embedding")[0]  # (N, W)
    results = []
    for image in images:
        out = {}
        stem = out["stem"] = patch_embed_conv(image, kernel, bias)
        x = stem.reshape(-1, stem.shape[-1])  # row-major over the grid
        if x.shape != posemb.shape:
            raise ValueError(
                f"patch grid {stem.shape[:2]} gives {x.shape[0]} tokens but img/pos_embedding has "
                f"{posemb.shape[0]}; resize it first with resize_posemb_fixed"
            )
        x = out["with_posemb"] = x + posemb
        x, blocks = encoder(x, p, "img/Transformer")
        out.update(blocks)
        out["encoded"] = x
        out["pooled"] = map_head(x, p.sub("img/MAPHead_0"))
        results.append(out)
    return stack_examples(results)


def text_tower(params, token_ids):
    """SigLIP text tower: no mask, not causal, last-position pooling, `txt/head`.

    Args:
        params: flat big_vision dict (`txt/...`).
        token_ids: int `(B, L)`. big_vision requires exactly the trained L; shorter inputs use the
            first positions of the table, as transformers does.

    Returns:
        dict with `embedded (B,L,Wt)` (token embeddings, as big_vision's `embedded`),
        `with_posemb (B,L,Wt)`, block intermediates, `encoded (B,L,Wt)`,
        `pre_logits (B,Wt)` (last position) and `pooled (B,E)` (head output; identity head if
        `txt/head` is absent, as for So400m/16-i18n).
    """
    p = Params(params)
    table = p.get("txt/Embed_0/embedding")
    posemb = p.get("txt/pos_embedding")[0]  # (L, Wt)
    token_ids = np.asarray(token_ids)
    if token_ids.shape[1] > posemb.shape[0]:
        raise ValueError(f"text length {token_ids.shape[1]} exceeds the position table ({posemb.shape[0]})")
    results = []
    for ids in token_ids:
        out = {}
        # As in big_vision, "embedded" is the bare token embedding, before the position embedding.
        x = out["embedded"] = np.stack([table[int(t)] for t in ids])
        x = out["with_posemb"] = x + posemb[: len(ids)]
        x, blocks = encoder(x, p, "txt/Encoder_0")
        out.update(blocks)
        out["encoded"] = x
        # The last position, not argmax(EOS): SigLIP 1 pads with EOS ("sticky"), SigLIP 2 pools a PAD
        # token that still attends to the whole text (docs/architecture.md, "Text tower").
        pre = out["pre_logits"] = x[-1]
        if p.has("txt/head/kernel"):
            out["pooled"] = pre @ p.get("txt/head/kernel") + p.get("txt/head/bias")
        else:
            out["pooled"] = pre.copy()
        results.append(out)
    return stack_examples(results)


def two_tower(params, images=None, token_ids=None, *, l2_eps=1e-8, naflex=None):
    """Both towers, L2 normalisation and the pairwise logits.

    Args:
        params: flat big_vision dict including `t` (log-temperature) and `b`.
        images: `(B_img, H, W, 3)` for the fixed-resolution tower, or None.
        token_ids: `(B_txt, L)` or None.
        l2_eps: `z / (||z|| + l2_eps)`; 1e-8 is big_vision, 0 is transformers.
        naflex: optional dict with `patches`, `patch_mask`, `spatial_shapes` (and optionally
            `masking`) used instead of `images` (NaFlex image tower).

    Returns:
        dict with `zimg_unnorm`, `zimg` (if an image input is given), `ztxt_unnorm`, `ztxt` (if
        text is given), `img` / `txt` (the towers' intermediates), `t_exp`, `b`, and
        `logits (B_img, B_txt) = t_exp * zimg @ ztxt.T + b` when both are given.
    """
    if images is not None and naflex is not None:
        raise ValueError("pass either images or naflex, not both")
    p = Params(params)
    out = {"t_exp": math.exp(float(p.get("t").reshape(()))), "b": float(p.get("b").reshape(()))}
    if images is not None:
        out["img"] = image_tower(params, images)
    elif naflex is not None:
        out["img"] = naflex_image_tower(
            params,
            naflex["patches"],
            naflex["patch_mask"],
            naflex["spatial_shapes"],
            masking=naflex.get("masking", "transformers"),
        )
    if "img" in out:
        out["zimg_unnorm"] = out["img"]["pooled"]
        out["zimg"] = l2_normalize(out["zimg_unnorm"], l2_eps)
    if token_ids is not None:
        out["txt"] = text_tower(params, token_ids)
        out["ztxt_unnorm"] = out["txt"]["pooled"]
        out["ztxt"] = l2_normalize(out["ztxt_unnorm"], l2_eps)
    if "zimg" in out and "ztxt" in out:
        zimg, ztxt = out["zimg"], out["ztxt"]
        logits = np.zeros((zimg.shape[0], ztxt.shape[0]))
        for i in range(zimg.shape[0]):
            for j in range(ztxt.shape[0]):
                logits[i, j] = out["t_exp"] * float(zimg[i] @ ztxt[j]) + out["b"]
        out["logits"] = logits
    return out


def two_tower_loss(params, images, token_ids, *, l2_eps=1e-8):
    """End-to-end sigmoid loss of a square batch, as a function of the parameters (float).

    Meant for slow finite-difference checks of parameter gradients (see `numeric_param_grad`).
    """
    p = Params(params)
    out = two_tower(params, images, token_ids, l2_eps=l2_eps)
    return sigmoid_loss(out["zimg"], out["ztxt"], p.get("t"), p.get("b"))


def numeric_param_grad(loss_fn, params, name, index, step=1e-5):
    """Central finite difference of `loss_fn(params)` w.r.t. `params[name][index]` in float64."""
    def shifted(delta):
        value = np.array(params[name], dtype=np.float64)
        value[index] += delta
        return loss_fn({**params, name: value})

    return (shifted(step) - shifted(-step)) / (2.0 * step)
