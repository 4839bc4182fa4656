"""Everything that depends on the Keras backend, behind one dispatch point.

The layers are written in `keras.ops`; where a backend has a faster kernel for the same math
(torch's fused attention and its oneDNN/addmm GEMMs, bfloat16 dots that accumulate in float32 on
JAX, the patch convolution as a matmul), the layers ask `kernels` for it. The models run
inference through `compiled` (JAX `jit`, TensorFlow XLA or graph, a recorded torch graph). Where
two kernels compete, `autotune` times them on this machine once per shape and keeps the faster
(`kernel_choices()` lists the decisions). On torch, Keras' Adam and AdamW update through
torch's fused kernel (`fuse_adam`). No other module branches on `keras.backend.backend()`
for speed.
"""

from keras_siglip.backend.compiled import (
    auto_jit_compile,
    predict_jit_compile,
    compiled_call,
    inference_context,
    is_concrete,
    no_grad,
    predicts_through_graphs,
)
from keras_siglip.backend.autotune import kernel_choices
from keras_siglip.backend.gradients import value_and_grads
from keras_siglip.backend.kernels import (
    affine,
    dot_product_attention,
    heads_major_attention,
    patches_as_matmul,
)
from keras_siglip.backend.torch_optim import fuse_adam
from keras_siglip.backend.torch_ops import (
    TORCH_CPU_GEMMS,
    available_torch_cpu_gemms,
    torch_cpu_gemm,
    torch_fused_attention,
)

__all__ = [
    "TORCH_CPU_GEMMS",
    "affine",
    "auto_jit_compile",
    "predict_jit_compile",
    "available_torch_cpu_gemms",
    "compiled_call",
    "dot_product_attention",
    "fuse_adam",
    "heads_major_attention",
    "inference_context",
    "is_concrete",
    "kernel_choices",
    "no_grad",
    "patches_as_matmul",
    "predicts_through_graphs",
    "torch_cpu_gemm",
    "torch_fused_attention",
    "value_and_grads",
]
