"""The model family as data: tower sizes by variant name and one row per released checkpoint.

Nothing here builds a model (see `keras_siglip.builders`) or touches a file (see
`keras_siglip.presets`): it is the table a reader checks against big_vision's `decode_variant`
and the published checkpoint lists (docs/checkpoints.md).
"""

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
    if not isinstance(name, str):
        raise TypeError(
            f"A variant is a str, one of {sorted(VARIANTS)}; received {name!r} "
            f"({type(name).__name__})."
        )
    if name not in VARIANTS:
        raise ValueError(f"Unknown variant {name!r}; valid variants: {sorted(VARIANTS)}.")
    width, depth, mlp_dim, num_heads = VARIANTS[name]
    config = {"width": width, "depth": depth, "mlp_dim": mlp_dim, "num_heads": num_heads}
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


_TOKENIZERS = {
    "c4_en": "gs://t5-data/vocabs/cc_en.32000/sentencepiece.model",
    "mc4": "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model",
    "gemma": "gs://big_vision/gemma_tokenizer.model",
}
_VOCAB = {"c4_en": 32_000, "mc4": 250_000, "gemma": 256_000}
_WIDTH = {"B": 768, "L": 1024, "So400m": 1152, "g-opt": 1536}
_HF_SIZE = {"B": "base", "L": "large", "So400m": "so400m", "g-opt": "giant-opt"}


def _preset(family, variant, patch, res, file, *, vocab, length=64, text_variant=None,
            text_head=True, hf_id, scan=False, note=""):
    text_variant = text_variant or ("So400m" if variant == "g-opt" else variant)
    naflex = res == "naflex"
    return {
        "family": family,
        "image_variant": variant,
        "text_variant": text_variant,
        "patch_size": patch,
        "image_size": res,
        "naflex": naflex,
        # NaFlex only: the side G of the learned position table, and the default patch budget
        # of preprocessing (published results use 256; any budget works with the same weights).
        "position_grid_size": 16 if naflex else None,
        "max_num_patches": 256 if naflex else None,
        "sequence_length": length,
        "vocabulary_size": _VOCAB[vocab],
        "embed_dim": _WIDTH[variant],
        "text_head": text_head,
        "tokenizer": vocab,
        "tokenizer_file": _TOKENIZERS[vocab],
        "tokenizer_flavor": "siglip" if family == "siglip" else "siglip2",
        "hf_id": hf_id,
        "big_vision_file": file,
        "scan_stacked": scan,
        "note": note,
    }


def _siglip1():
    bv = "gs://big_vision/siglip/"
    rows = [
        ("B", 16, 224, "webli_en_b16_224_63724782.npz", {}),
        ("B", 16, 256, "webli_en_b16_256_60500360.npz", {}),
        ("B", 16, 384, "webli_en_b16_384_68578854.npz", {}),
        ("B", 16, 512, "webli_en_b16_512_68580893.npz", {"scan": True}),
        ("L", 16, 256, "webli_en_l16_256_60552751.npz", {}),
        ("L", 16, 384, "webli_en_l16_384_63634585.npz", {}),
        ("So400m", 14, 224, "webli_en_so400m_224_57633886.npz", {"length": 16, "scan": True}),
        ("So400m", 14, 384, "webli_en_so400m_384_58765454.npz", {}),
    ]
    presets = {}
    for variant, patch, res, file, extra in rows:
        size = _HF_SIZE[variant]
        presets[f"siglip_{size}_patch{patch}_{res}"] = _preset(
            "siglip", variant, patch, res, bv + file, vocab="c4_en",
            hf_id=f"google/siglip-{size}-patch{patch}-{res}", **extra)
    presets["siglip_base_patch16_256_multilingual"] = _preset(
        "siglip", "B", 16, 256, bv + "webli_i18n_b16_256_66117334.npz", vocab="mc4",
        hf_id="google/siglip-base-patch16-256-multilingual",
        note="text head: transformers' port writes an identity head (docs/checkpoints.md)")
    presets["siglip_so400m_patch16_256_i18n"] = _preset(
        "siglip", "So400m", 16, 256, bv + "webli_i18n_so400m_16_256_78061115.npz",
        vocab="mc4", text_head=False, scan=True,
        hf_id="google/siglip-so400m-patch16-256-i18n", note="no txt/head")
    return presets


def _siglip2():
    bv = "gs://big_vision/siglip2/"
    short = {"B": "b", "L": "l", "So400m": "so400m", "g-opt": "g-opt"}
    rows = [
        ("B", 32, [256]),
        ("B", 16, [224, 256, 384, 512]),
        ("L", 16, [256, 384, 512]),
        ("So400m", 14, [224, 384]),
        ("So400m", 16, [256, 384, 512]),
        ("g-opt", 16, [256, 384]),
    ]
    presets = {}
    for variant, patch, resolutions in rows:
        size = _HF_SIZE[variant]
        for res in resolutions:
            name = f"siglip2_{size.replace('-', '_')}_patch{patch}_{res}"
            presets[name] = _preset(
                "siglip2", variant, patch, res,
                f"{bv}siglip2_{short[variant]}{patch}_{res}.npz", vocab="gemma",
                hf_id=f"google/siglip2-{size}-patch{patch}-{res}",
                note="So400m text tower, text head 1152 -> 1536" if variant == "g-opt" else "")
    # NaFlex: file names from big_vision's SigLIP 2 README and its models list. So400m NaFlex
    # needs variant So400m (big_vision's demo notebook hard-codes "B", apparently a bug).
    for variant in ("B", "So400m"):
        size = _HF_SIZE[variant]
        presets[f"siglip2_{size}_patch16_naflex"] = _preset(
            "siglip2", variant, 16, "naflex", f"{bv}siglip2_{short[variant]}16_naflex.npz",
            vocab="gemma", hf_id=f"google/siglip2-{size}-patch16-naflex",
            note="NaFlex: variable resolution and aspect ratio; 16x16 position table resized "
                 "per image; default budget 256 patches")
    return presets


PRESETS = {**_siglip1(), **_siglip2()}
