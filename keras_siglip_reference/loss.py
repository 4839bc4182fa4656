"""The SigLIP sigmoid loss, its analytic gradients and the L2-normalisation backward (docs/loss.md).

Written per pair, `-(1/B) sum_ij log sigmoid(z_ij * l_ij)` with `l_ij = exp(t_param) <x_i, y_j> + b`
and `z_ij = +1` on the diagonal, -1 elsewhere. Normalised by B, not B^2.
Scalars (`t_param`, `b`) may be Python numbers, 0-d or `(1,)` arrays; results are Python floats.
"""

import math

import numpy as np

from ._params import f64


def _scalar(x, name):
    arr = np.asarray(x, dtype=np.float64)
    if arr.size != 1:
        raise ValueError(f"{name} must hold a single value, got shape {arr.shape}")
    return float(arr.reshape(()))


def softplus(u):
    """`log(1 + exp(u))` without overflow: `max(u, 0) + log1p(exp(-|u|))`."""
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


def sigmoid(u):
    """Logistic function without overflow for large |u|."""
    if u >= 0:
        return 1.0 / (1.0 + math.exp(-u))
    e = math.exp(u)
    return e / (1.0 + e)


def _check_square(zimg, ztxt):
    zimg, ztxt = f64(zimg), f64(ztxt)
    if zimg.ndim != 2 or zimg.shape != ztxt.shape:
        raise ValueError(
            f"the sigmoid loss needs a square batch of paired embeddings, got {zimg.shape} and {ztxt.shape}"
        )
    return zimg, ztxt


def _pair_logits(zimg, ztxt, t, b):
    batch = zimg.shape[0]
    logits = np.zeros((batch, batch))
    for i in range(batch):
        for j in range(batch):
            logits[i, j] = t * float(zimg[i] @ ztxt[j]) + b
    return logits


def sigmoid_loss(zimg, ztxt, t_param, b):
    """Sigmoid loss of normalised embeddings `zimg (B,E)`, `ztxt (B,E)`; `t_param` is log t.

    Returns a Python float. Raises ValueError unless the batch is square.
    """
    zimg, ztxt = _check_square(zimg, ztxt)
    logits = _pair_logits(zimg, ztxt, math.exp(_scalar(t_param, "t_param")), _scalar(b, "b"))
    batch = zimg.shape[0]
    total = 0.0
    for i in range(batch):
        for j in range(batch):
            z = 1.0 if i == j else -1.0
            total += softplus(-z * logits[i, j])  # -log sigmoid(z l) = softplus(-z l)
    return total / batch


def sigmoid_loss_grads(zimg, ztxt, t_param, b):
    """Loss and analytic gradients (docs/loss.md, "Analytic gradients").

    With `G_ij = (sigmoid(l_ij) - delta_ij) / B`:
    dL/dzimg_i = t sum_j G_ij ztxt_j, dL/dztxt_j = t sum_i G_ij zimg_i,
    dL/dt_param = sum_ij G_ij (l_ij - b) (chain rule through t = exp(t_param)), dL/db = sum_ij G_ij.

    Returns:
        dict with `loss` (float), `grad_zimg (B,E)`, `grad_ztxt (B,E)`, `grad_t_param` (float),
        `grad_b` (float), and `grad_logits (B,B)` (= G).
    """
    zimg, ztxt = _check_square(zimg, ztxt)
    t, b = math.exp(_scalar(t_param, "t_param")), _scalar(b, "b")
    batch = zimg.shape[0]
    logits = _pair_logits(zimg, ztxt, t, b)
    g = np.zeros((batch, batch))
    for i in range(batch):
        for j in range(batch):
            g[i, j] = (sigmoid(logits[i, j]) - (1.0 if i == j else 0.0)) / batch
    grad_zimg = np.zeros_like(zimg)
    grad_ztxt = np.zeros_like(ztxt)
    grad_t_param = 0.0
    grad_b = 0.0
    for i in range(batch):
        for j in range(batch):
            grad_zimg[i] += t * g[i, j] * ztxt[j]
            grad_ztxt[j] += t * g[i, j] * zimg[i]
            grad_t_param += g[i, j] * (logits[i, j] - b)
            grad_b += g[i, j]
    return {
        "loss": sigmoid_loss(zimg, ztxt, t_param, b),
        "grad_zimg": grad_zimg,
        "grad_ztxt": grad_ztxt,
        "grad_t_param": grad_t_param,
        "grad_b": grad_b,
        "grad_logits": g,
    }


def l2_normalize(u, eps=1e-8):
    """Row-wise `u / (||u|| + eps)`: eps=1e-8 big_vision, 0 transformers (docs/architecture.md)."""
    u = f64(u)
    out = np.zeros_like(u)
    for i in range(u.shape[0]):
        out[i] = u[i] / (math.sqrt(float(u[i] @ u[i])) + eps)
    return out


def l2_normalize_backward(u, g, eps=1e-8):
    """Gradient w.r.t. `u (B,E)` of `z = u / (||u|| + eps)` given `g = dL/dz (B,E)`, row by row.

    `dL/du = g/(n+eps) - u <u,g> / (n (n+eps)^2)` with `n = ||u||`. For eps=0 this is the
    transformers form `(g - z<z,g>)/n`. At `u = 0` the norm is not differentiable; with eps > 0 we
    return `g/eps`, i.e. take d||u||/du = 0 there (eps = 0 raises).
    """
    u, g = f64(u), f64(g)
    out = np.zeros_like(u)
    for i in range(u.shape[0]):
        n = math.sqrt(float(u[i] @ u[i]))
        if n == 0.0:
            if eps == 0.0:
                raise ValueError("the eps=0 (transformers) normalisation has no gradient at u = 0")
            out[i] = g[i] / eps
            continue
        out[i] = g[i] / (n + eps) - u[i] * float(u[i] @ g[i]) / (n * (n + eps) ** 2)
    return out
