"""Presets for every released SigLIP and SigLIP 2 checkpoint, and where their weights live.

Weights cannot be downloaded by this library. Put the published file in the
cache folder (`$KERAS_SIGLIP_CACHE`, default `~/.cache/keras_siglip`) under
one of the names that `weights_candidates(name)` lists; `from_preset(name)`
finds it there.
"""

import os
from pathlib import Path

from keras_siglip.variants import decode_variant

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
        note="text head: transformers' port writes an identity head (SPEC OPEN-1)")
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


def list_presets():
    """Names of every released checkpoint, in a stable order."""
    return list(PRESETS)


def preset_info(name):
    """The preset's description: architecture, resolution, tokenizer, upstream ids."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; valid presets: {', '.join(PRESETS)}.")
    return dict(PRESETS[name])


def cache_dir():
    """Folder where `from_preset(name)` looks for weights."""
    return Path(os.environ.get("KERAS_SIGLIP_CACHE", Path.home() / ".cache" / "keras_siglip"))


def weights_candidates(name):
    """Paths, in order, where the weights of preset `name` may be put."""
    info = preset_info(name)
    folder = cache_dir()
    return [
        folder / f"{name}.keras",
        folder / f"{name}.npz",
        folder / Path(info["big_vision_file"]).name,
        folder / name,  # a transformers folder (config.json + safetensors)
    ]


def architecture_kwargs(name, **overrides):
    """Keyword arguments of the vision and text towers for a preset."""
    info = preset_info(name)
    unknown = set(overrides) - set(info)
    if unknown:
        raise ValueError(
            f"Unknown override(s) {sorted(unknown)} for preset {name!r}; valid keys: "
            f"{sorted(info)}."
        )
    info.update(overrides)
    vision = {"patch_size": info["patch_size"], **decode_variant(info["image_variant"])}
    if info["naflex"]:
        vision["position_grid_size"] = info["position_grid_size"]
    else:
        vision["image_size"] = info["image_size"]
    text = {
        "vocabulary_size": info["vocabulary_size"],
        "sequence_length": info["sequence_length"],
        "embed_dim": info["embed_dim"] if info["text_head"] else None,
        "use_head": info["text_head"],
        **decode_variant(info["text_variant"]),
    }
    return info, vision, text


def build_from_preset(cls, preset, load_weights=True, **overrides):
    """Implementation of `SigLIP.from_preset` (see there)."""
    path = Path(str(preset)).expanduser()
    if str(preset) not in PRESETS and (path.exists() or path.suffix in (".keras", ".npz")):
        return _load_path(path, **overrides)
    info, vision_kwargs, text_kwargs = architecture_kwargs(preset, **overrides)
    if load_weights:
        for candidate in weights_candidates(preset):
            if candidate.exists():
                return _load_path(candidate, preset=preset, **overrides)
        places = "\n  ".join(str(p) for p in weights_candidates(preset))
        raise FileNotFoundError(
            f"No weights for preset {preset!r} in the cache folder {cache_dir()} (set "
            f"KERAS_SIGLIP_CACHE to change it). Download the big_vision checkpoint "
            f"{info['big_vision_file']} (or the transformers checkpoint "
            f"https://huggingface.co/{info['hf_id']}) and put it at one of:\n  {places}\n"
            "or pass load_weights=False for random weights."
        )
    from keras_siglip.models import SigLIPTextEncoder, SigLIPVisionEncoder

    if info["naflex"]:
        from keras_siglip.models import SigLIPNaFlexVisionEncoder

        vision = SigLIPNaFlexVisionEncoder(**vision_kwargs, name="vision_encoder")
    else:
        vision = SigLIPVisionEncoder(**vision_kwargs, name="vision_encoder")
    text = SigLIPTextEncoder(**text_kwargs, name="text_encoder")
    return cls(vision, text, name=preset)


def _load_path(path, preset=None, **overrides):
    import keras

    if overrides and path.suffix != ".npz":
        # A .keras file or a transformers folder fixes its architecture; ignoring the
        # overrides silently would hand back a model other than the one asked for.
        raise ValueError(
            f"Overrides {sorted(overrides)} apply to presets and big_vision .npz files only; "
            f"{path} defines its own architecture."
        )
    if path.suffix == ".keras":
        return keras.saving.load_model(path)
    if path.suffix == ".npz":
        from keras_siglip.convert import load_big_vision

        return load_big_vision(path, preset=preset, **overrides)
    if path.is_dir() and (path / "config.json").exists():
        from keras_siglip.convert import load_transformers

        return load_transformers(path)
    raise ValueError(
        f"Cannot tell the format of {path}: expected a .keras file, a big_vision .npz or a "
        "transformers folder with config.json."
    )
