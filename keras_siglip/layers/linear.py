"""The affine map behind every projection: `x @ kernel + bias` with flax's multi-axis kernels."""

import functools
import math
import os

import keras
from keras import ops

TORCH_CPU_GEMMS = ("onednn", "addmm")


def torch_cpu_gemm():
    """The kernel behind float32 inference matmuls on torch CPU tensors: "onednn" or "addmm".

    `$KERAS_SIGLIP_TORCH_CPU_GEMM` picks it. By default "onednn" where torch's CPU kernels run
    AVX-512 (`torch.backends.cpu.get_cpu_capability()`) and torch has oneDNN, "addmm" elsewhere.
    On the AVX-512 host of benchmarks/README.md oneDNN's matmul primitive ran the B/16 shapes at
    196-211 GFLOP/s against 147-190 for `addmm` (MKL, which takes a slower path on that AMD CPU),
    and the B/16 tower 1.10x (batch 8) and 1.17x (batch 1) faster; on an AVX2 host oneDNN
    (pre-packed weights) lost to `addmm` at 1568 rows. Both are float32 GEMMs; they differ in
    summation order only (~1e-6).
    """
    choice = os.environ.get("KERAS_SIGLIP_TORCH_CPU_GEMM")
    if choice is None:
        return _default_torch_cpu_gemm()
    if choice not in TORCH_CPU_GEMMS:
        raise ValueError(
            f"KERAS_SIGLIP_TORCH_CPU_GEMM={choice!r} is not a known kernel; set it to one of "
            f"{TORCH_CPU_GEMMS} or unset it for the default."
        )
    if choice not in available_torch_cpu_gemms():
        raise ValueError(
            "KERAS_SIGLIP_TORCH_CPU_GEMM='onednn' but this torch build has no oneDNN linear "
            "operator (torch.ops.mkldnn._linear_pointwise); set it to 'addmm'."
        )
    return choice


def available_torch_cpu_gemms():
    """The kernels of `TORCH_CPU_GEMMS` this torch build has ("addmm" always)."""
    return ("addmm", "onednn") if _onednn_linear() is not None else ("addmm",)


@functools.cache
def _default_torch_cpu_gemm():
    import torch

    avx512 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return "onednn" if avx512 and "onednn" in available_torch_cpu_gemms() else "addmm"


@functools.cache
def _onednn_linear():
    """torch's oneDNN linear operator, or None where this torch build has none."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def _torch_affine(x, kernel, bias):
    import torch

    # oneDNN's linear has no autograd formula (a backward through it would silently give no
    # gradient), so it only runs where nothing needs one: inference under no_grad/inference_mode,
    # which is where every compiled path (`encode_images`, `predict`) records its graph.
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or kernel.requires_grad or bias.requires_grad
    )
    if (
        not needs_grad
        and x.device.type == "cpu"
        and x.dtype == kernel.dtype == bias.dtype == torch.float32
        and torch_cpu_gemm() == "onednn"
    ):
        # The (out, in) view of the (in, out) kernel is what the operator takes; it repacks the
        # weight for its own kernel, so no copy is kept here.
        return _onednn_linear()(x, kernel.t(), bias, "none", [], "")
    # The bias added inside the GEMM, not in a second pass over the output.
    return torch.addmm(bias, x, kernel)


def affine(x, kernel, bias):
    """`x @ kernel + bias` for a 2-D `x` and `kernel`. On torch: one GEMM with the bias inside it
    (`torch.addmm`, or oneDNN's linear for float32 inference on CPUs where it is faster, see
    `torch_cpu_gemm`); elsewhere a matmul and an add, which XLA fuses."""
    if keras.backend.backend() == "torch":
        return _torch_affine(x, kernel, bias)
    return ops.add(ops.matmul(x, kernel), bias)


@keras.saving.register_keras_serializable(package="keras_siglip")
class Linear(keras.layers.Layer):
    """`x @ kernel + bias`, contracting the last `input_axes` axes of `x`.

    The kernel is `(*input_dims, *output_shape)` and the bias `output_shape`:
    flax's layouts, e.g. `(W, H, hd)` for an attention query projection
    (`output_shape=(H, hd)`) and `(H, hd, W)` for its output projection
    (`input_axes=2`). It runs as one 2-D matmul on the flattened axes; on
    torch that matmul adds the bias inside the GEMM instead of in a second
    pass over the output (measurably faster on the CPU, benchmarks/README.md;
    the kernel is chosen by `torch_cpu_gemm`).

    Args:
        output_shape: int or tuple of ints. The output axes that replace the
            contracted ones.
        input_axes: int. How many trailing input axes are contracted.
        kernel_initializer: initializer of the kernel (Glorot uniform, as
            Keras' `Dense` and `EinsumDense`).

    Example:
    >>> proj = Linear((4, 8))
    >>> proj(np.zeros((2, 5, 32))).shape
    (2, 5, 4, 8)
    """

    def __init__(self, output_shape, input_axes=1, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(output_shape, int):
            output_shape = (output_shape,)
        self.units_shape = tuple(int(d) for d in output_shape)
        self.input_axes = int(input_axes)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel = self.bias = None

    def build(self, input_shape):
        input_dims = tuple(input_shape[-self.input_axes:])
        if any(d is None for d in input_dims):
            raise ValueError(
                f"'{self.name}' needs the last {self.input_axes} input axes to be known; "
                f"received input shape {tuple(input_shape)}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=input_dims + self.units_shape, initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=self.units_shape, initializer="zeros")

    def call(self, x):
        in_size = math.prod(self.kernel.shape[: self.input_axes])
        out_size = math.prod(self.units_shape)
        leading = ops.shape(x)[: -self.input_axes]
        x = ops.reshape(x, (-1, in_size))
        kernel = ops.reshape(self.kernel, (in_size, out_size))
        bias = ops.reshape(self.bias, (out_size,))
        return ops.reshape(affine(x, kernel, bias), (*leading, *self.units_shape))

    def compute_output_shape(self, input_shape):
        return (*input_shape[: -self.input_axes], *self.units_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_shape": self.units_shape,
                "input_axes": self.input_axes,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
