"""torch: Keras' Adam and AdamW updates through torch's fused kernel.

Imported on every backend; torch itself is imported only when a step runs.

Keras' torch Adam makes about ten `torch._foreach_*` passes over every weight per step (the
moments, their temporaries, the update), while `torch._fused_adam_` does the whole Adam update
in one pass over each weight and its two moments. On a B/16 two-tower (203M weights) on the
CPU, Keras' update took 1.0 s of a 10 s training step, the fused one 0.28 s, and
`torch.optim.AdamW` 0.44 s (benchmarks/README.md).

The fused kernel computes the same update in another form. Keras (t = step, 1-based):

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

torch divides sqrt(v) by sqrt(1 - b2^t) and adds its eps after, so it gets Keras' update with
eps / sqrt(1 - b2^t) in place of eps; for float32 weights the results differ by rounding only
(for float16/bfloat16 weights torch's kernel computes in float32, more precisely than Keras'
update in the weights' dtype). AdamW's decoupled weight decay stays Keras' own pass (with its
`exclude_from_weight_decay` rules), before the update, as Keras applies it. Only weights on
the CPU take this path; on an accelerator Keras' own update runs.
"""

import math
import os
import types

import keras

FUSED_ENV = "KERAS_SIGLIP_TORCH_FUSED_ADAM"  # "0" keeps Keras' own update


def fuse_adam(optimizer):
    """`optimizer`, updating through `torch._fused_adam_` where that is Keras' Adam step.

    Applies to a Keras `Adam` or `AdamW` on the torch backend whose update step is Keras' own
    (not overridden by a subclass) and without `amsgrad`; anything else is returned unchanged.
    Each step takes the fused kernel for weights on the CPU with dense gradients of their dtype,
    and Keras' own update otherwise.
    The instance is changed in place (its `_parallel_update_step`); nothing is saved with it.
    `$KERAS_SIGLIP_TORCH_FUSED_ADAM=0` turns it off.
    """
    if keras.backend.backend() != "torch" or os.environ.get(FUSED_ENV, "1") == "0":
        return optimizer
    adam = _keras_torch_adam()
    if (
        not isinstance(optimizer, adam)
        or type(optimizer)._parallel_update_step is not adam._parallel_update_step
        or optimizer.amsgrad
        or "_parallel_update_step" in optimizer.__dict__
    ):
        return optimizer
    optimizer._parallel_update_step = types.MethodType(_fused_update_step, optimizer)
    return optimizer


def _keras_torch_adam():
    """The class `keras.optimizers.Adam()` makes on the torch backend (its `_foreach` update;
    Keras' AdamW there subclasses it), found without importing Keras' internals."""
    return type(keras.optimizers.Adam.__new__(keras.optimizers.Adam))


def is_fused(optimizer):
    """True when `fuse_adam` changed `optimizer` (or the optimizer a guard wraps)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return getattr(optimizer.__dict__.get("_parallel_update_step"), "__func__", None) is (
        _fused_update_step
    )


def _fused_update_step(self, grads, variables, learning_rate):
    """Keras' `_parallel_update_step` of Adam, as one `torch._fused_adam_` call."""
    import torch

    values = [v.value for v in variables]
    grads = list(grads)
    if any(
        g is None or g.dtype != w.dtype or g.device != w.device or g.is_sparse
        or w.device.type != "cpu"
        for g, w in zip(grads, values)
    ):
        # Keras' own update handles what this path does not take (accelerator tensors, whose
        # fused kernels want their step counts on the device: Keras' `_foreach` update is the
        # fast one there).
        return _keras_torch_adam()._parallel_update_step(self, grads, variables, learning_rate)
    index = self._get_variable_index
    t = float(keras.ops.convert_to_numpy(self.iterations)) + 1.0
    settings = {
        "lr": float(keras.ops.convert_to_numpy(learning_rate)),
        "beta1": float(self.beta_1),
        "beta2": float(self.beta_2),
        "weight_decay": 0.0,
        "eps": self.epsilon / math.sqrt(1.0 - self.beta_2**t),
        "amsgrad": False,
        "maximize": False,
    }
    step = torch.tensor(t, dtype=torch.float32)
    for dtype in sorted({w.dtype for w in values}, key=str):  # one call per dtype
        group = [i for i, w in enumerate(values) if w.dtype == dtype]
        torch._fused_adam_(
            [values[i] for i in group],
            [grads[i] for i in group],
            [self._momentums[index(variables[i])].value for i in group],
            [self._velocities[index(variables[i])].value for i in group],
            [],
            [step] * len(group),
            **settings,
        )
