"""Implementations the command line verifies: keras-siglip (`keras`) and Hugging Face
`transformers`, each with the deliberate mistakes of `BROKEN_VARIANTS` for exercising the
locator (docs/conformance_kit.md)."""

BROKEN_VARIANTS = {
    "gelu_erf": "exact (erf) GELU instead of the tanh approximation",
    "ln_eps": "LayerNorm eps 1e-5 instead of 1e-6",
    "map_residual": "MAP head with a residual around its attention",
    "map_unscaled": "MAP head attention logits without the 1/sqrt(head_dim) scale",
}


def check_variant(variant):
    """Raise a ValueError unless `variant` is a key of `BROKEN_VARIANTS`."""
    if variant not in BROKEN_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(BROKEN_VARIANTS)}, got {variant!r}")


def image_size(kit):
    """The kit's fixed `(height, width)`, or None for a NaFlex kit."""
    config = kit["manifest"]["config"]
    return None if config["naflex"] else tuple(config["vision"]["image_size"])
