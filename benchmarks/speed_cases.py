"""What `speed.py` measures: the implementations, the cases and the matmul FLOPs each case does."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "tensorflow", "torch")
IMPLS = (
    "keras-jax",
    "keras-tensorflow",
    "keras-torch",
    "transformers",
    "kerashub-jax",
    "kerashub-tensorflow",
    "kerashub-torch",
)
B16 = dict(patch=16, width=768, depth=12, mlp=3072, heads=12)
TEXT = dict(vocab=32000, length=64, width=768, depth=12, mlp=3072, heads=12)
F32, BF16, MIXED = "float32", "bfloat16", "mixed_bfloat16"
CASES = {
    "vision_b1": dict(kind="vision", batch=1, image=224, dtype=F32),
    "vision_b8": dict(kind="vision", batch=8, image=224, dtype=F32),
    "vision_b32": dict(kind="vision", batch=32, image=224, dtype=F32),
    "two_tower": dict(kind="two_tower", batch=8, image=224, dtype=F32),
    "fixed_256": dict(kind="vision", batch=8, image=256, dtype=F32),
    "naflex_256": dict(kind="naflex", batch=8, budget=256, dtype=F32),
    "naflex_1024": dict(kind="naflex", batch=2, budget=1024, dtype=F32),
    # bfloat16: keras-siglip under keras.config.set_dtype_policy("bfloat16"), transformers with
    # `.to(torch.bfloat16)`; the same weights, rounded to bfloat16 in both.
    "vision_b1_bf16": dict(kind="vision", batch=1, image=224, dtype=BF16),
    "vision_b8_bf16": dict(kind="vision", batch=8, image=224, dtype=BF16),
    "two_tower_bf16": dict(kind="two_tower", batch=8, image=224, dtype=BF16),
    "naflex_256_bf16": dict(kind="naflex", batch=8, budget=256, dtype=BF16),
    # Keras' "mixed_bfloat16": float32 variables, bfloat16 compute (transformers in bfloat16).
    "vision_b8_mixed": dict(kind="vision", batch=8, image=224, dtype=MIXED),
}
# What a plain `python benchmarks/speed.py` runs: the goal cases in both dtypes and NaFlex.
DEFAULT_CASES = ("vision_b1", "vision_b8", "two_tower", "fixed_256", "naflex_256",
                 "vision_b1_bf16", "vision_b8_bf16", "two_tower_bf16", "vision_b8_mixed")
# Image sizes (height, width) whose NaFlex grids make the mixed batches.
NAFLEX_IMAGES = [(512, 512), (480, 640), (640, 480), (360, 640), (640, 360), (400, 800),
                 (800, 400), (427, 640)]
MATMUL_SHAPES = ((2048, 2048, 2048), (1568, 768, 3072))


# ----------------------------------------------------------------------------------------
# FLOP counts (matmul FLOPs only: 2 * m * n * k per product).


def _encoder_flops(batch, tokens, width, depth, mlp):
    projections = 2 * batch * tokens * (4 * width * width + 2 * width * mlp)
    attention = 2 * 2 * batch * tokens * tokens * width  # q k^T and weights @ v
    return depth * (projections + attention)


def _map_head_flops(batch, tokens, width, mlp):
    kv = 2 * 2 * batch * tokens * width * width
    probe = 2 * batch * (2 * width * width + 2 * tokens * width + 2 * width * mlp)  # q, out, attn, MLP
    return kv + probe + 2 * width * width  # + the probe's query projection


def _vision_flops(batch, tokens):
    w, p = B16["width"], B16["patch"]
    return (
        2 * batch * tokens * (p * p * 3) * w
        + _encoder_flops(batch, tokens, w, B16["depth"], B16["mlp"])
        + _map_head_flops(batch, tokens, w, B16["mlp"])
    )


def case_flops(case):
    spec = CASES[case]
    batch = spec["batch"]
    if spec["kind"] == "naflex":
        return _vision_flops(batch, spec["budget"])
    tokens = (spec["image"] // B16["patch"]) ** 2
    flops = _vision_flops(batch, tokens)
    if spec["kind"] == "two_tower":
        t = TEXT
        flops += _encoder_flops(batch, t["length"], t["width"], t["depth"], t["mlp"])
        flops += 2 * batch * t["width"] * t["width"]  # text head
        flops += 2 * batch * batch * t["width"]  # logits
    return flops


def _impl_backend(impl):
    """The Keras backend whose worker runs `impl` (transformers runs in the torch worker)."""
    return "torch" if impl == "transformers" else impl.split("-", 1)[1]


def case_dtype(case):
    """The Keras dtype policy of a case ("float32" for runs recorded before cases had one)."""
    return CASES[case].get("dtype", F32) if case in CASES else F32


def torch_dtype_name(case):
    """The dtype transformers runs a case in: bfloat16 for both bfloat16 policies."""
    return F32 if case_dtype(case) == F32 else BF16
