"""torch kernels: the CPU GEMM choice (oneDNN linear or `addmm`) and fused attention.

Imported on every backend; torch itself is imported only when a function runs.
"""

import functools

from keras_siglip.backend import autotune

TORCH_CPU_GEMMS = ("addmm", "onednn")  # the plain kernel first
GEMM_ENV = "KERAS_SIGLIP_TORCH_CPU_GEMM"


def torch_cpu_gemm(m=None, k=None, n=None, dtype="float32"):
    """The kernel of an `(m, k) @ (k, n)` inference GEMM on torch CPU tensors: "addmm" or "onednn".

    `$KERAS_SIGLIP_TORCH_CPU_GEMM` (`addmm`, `onednn`, or `auto`) forces one. Otherwise both are
    timed on this shape and dtype the first time it is met (`autotune.choose`, a few
    milliseconds), and the faster is kept for the process: MKL's `addmm` and oneDNN's linear
    trade places with the CPU (oneDNN 1.1-1.2x faster on an AMD EPYC host, 1.4x slower on a
    Sapphire Rapids one, benchmarks/README.md). They differ in summation order only (~1e-6 in
    float32). Without a shape, the forced kernel or None ("timed per shape").
    """
    forced = autotune.override(GEMM_ENV, TORCH_CPU_GEMMS)
    if forced == "onednn" and "onednn" not in available_torch_cpu_gemms():
        raise ValueError(
            f"{GEMM_ENV}='onednn' but this torch build has no oneDNN linear operator "
            "(torch.ops.mkldnn._linear_pointwise); set it to 'addmm' or 'auto'."
        )
    if forced is not None or m is None:
        return forced
    if len(available_torch_cpu_gemms()) == 1:
        return "addmm"
    key = (int(m), int(k), int(n), str(dtype))
    decided = autotune.cached("torch_cpu_gemm", key)
    if decided is not None:
        return decided
    return _on_plain_thread(
        lambda: autotune.choose("torch_cpu_gemm", key, _gemm_candidates(*key))
    )


def available_torch_cpu_gemms():
    """The kernels of `TORCH_CPU_GEMMS` this torch build has ("addmm" always)."""
    return ("addmm", "onednn") if _onednn_linear() is not None else ("addmm",)


def _gemm_candidates(m, k, n, dtype):
    """`autotune` candidates: each kernel on fresh `(m, k) @ (k, n) + bias` operands."""

    def candidate(name):
        def make():
            import torch

            dt = getattr(torch, dtype)
            x, w, b = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt), torch.randn(n, dtype=dt)
            return lambda: _gemm(name, x, w, b)

        return make

    return {name: candidate(name) for name in available_torch_cpu_gemms()}


def _on_plain_thread(fn):
    """`fn()` on another thread, outside this thread's torch dispatch modes.

    The first GEMM of a shape may come while `make_fx` records a graph; the recording is a
    thread-local dispatch mode, so the timing runs on a thread of its own and nothing of it
    enters the graph.
    """
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def _gemm(name, x, kernel, bias):
    import torch

    with torch.inference_mode():
        if name == "onednn":
            # The (out, in) view of the (in, out) kernel is what the operator takes; it repacks
            # the weight for its own kernel, so no copy is kept here.
            return _onednn_linear()(x, kernel.t(), bias, "none", [], "")
        return torch.addmm(bias, x, kernel)


@functools.cache
def _onednn_linear():
    """torch's oneDNN linear operator, or None where this torch build has none."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def torch_affine(x, kernel, bias, activation=None):
    """`activation(x @ kernel + bias)` on torch tensors as one GEMM (`torch_cpu_gemm` picks the
    kernel); `activation` is None or "gelu_tanh", fused into oneDNN's linear as a post-op."""
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
        and x.dtype == kernel.dtype == bias.dtype
        and x.dtype in (torch.float32, torch.bfloat16)
    ):
        (m, k), n = x.shape, kernel.shape[1]
        if torch_cpu_gemm(m, k, n, str(x.dtype).removeprefix("torch.")) == "onednn":
            if activation == "gelu_tanh":
                return _onednn_linear()(x, kernel.t(), bias, "gelu", [], "tanh")
            return _onednn_linear()(x, kernel.t(), bias, "none", [], "")
    # The bias added inside the GEMM, not in a second pass over the output.
    y = torch.addmm(bias, x, kernel)
    if activation == "gelu_tanh":
        y = torch.nn.functional.gelu(y, approximate="tanh")
    return y


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
