"""Tower sizes by variant name (big_vision's `decode_variant` table)."""

VARIANTS = {
    # name: (width, depth, mlp_dim, num_heads)
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "So400m": (1152, 27, 4304, 16),  # mlp_dim is not 4 * width
    "g": (1408, 40, 6144, 16),
    "g-opt": (1536, 40, 6144, 16),
    # Tiny sizes for tests and demos.
    "mu": (32, 2, 37, 4),
    "pico": (48, 2, 96, 3),
    "nano": (64, 2, 128, 4),
}


def decode_variant(name, **overrides):
    """Return `dict(width, depth, mlp_dim, num_heads)` for a variant name.

    Explicit keyword arguments win over the table (as in big_vision).

    >>> decode_variant("So400m")["mlp_dim"]
    4304
    """
    if name not in VARIANTS:
        raise ValueError(f"Unknown variant {name!r}; valid variants: {sorted(VARIANTS)}.")
    width, depth, mlp_dim, num_heads = VARIANTS[name]
    config = {"width": width, "depth": depth, "mlp_dim": mlp_dim, "num_heads": num_heads}
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config
