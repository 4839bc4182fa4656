"""torch kernels: the CPU GEMM choice (oneDNN linear or `addmm`) and fused attention.

Imported on every backend; torch itself is imported only when a function runs.
"""

import functools
import os

TORCH_CPU_GEMMS = ("onednn", "addmm")


def torch_cpu_gemm():
    """The kernel behind float32 inference matmuls on torch CPU tensors: "onednn" or "addmm".

    `$KERAS_SIGLIP_TORCH_CPU_GEMM` picks it. By default "onednn" where torch's CPU kernels run
    AVX-512 (`torch.backends.cpu.get_cpu_capability()`) and torch has oneDNN, "addmm" elsewhere
    (measured on the hosts listed in benchmarks/README.md). Both are float32 GEMMs; they differ
    in summation order only (~1e-6).
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


def torch_affine(x, kernel, bias):
    """`x @ kernel + bias` on torch tensors as one GEMM (`torch_cpu_gemm` picks the kernel)."""
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


def torch_fused_attention(q, k, v, mask=None):
    """torch's fused `scaled_dot_product_attention` on heads-major views of `(B, T, H, hd)` inputs.

    The same kernel as `ops.dot_product_attention` on torch, without its three `contiguous()`
    copies: the fused kernel reads strided heads-major views.

    Args:
        q: `(B, T, H, hd)`; k, v: `(B, S, H, hd)` torch tensors.
        mask: bool, broadcastable to `(B, H, T, S)`, or None. False keys get zero weight.

    Returns:
        `(B, T, H, hd)`.
    """
    import torch

    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    x = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return x.transpose(1, 2)
