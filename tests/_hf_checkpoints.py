"""Tiny transformers checkpoints as a user downloads them, made in the test: a random
`SiglipModel` / `Siglip2Model` saved with `save_pretrained`, a SentencePiece model trained here,
and transformers' own tokenizer and image processor saved with theirs. Also a few PNG files.

Used by the processor, pipeline and command-line tests. Needs torch, transformers,
sentencepiece and pillow (the callers skip without them).
"""

import io
import math
import random
import shutil

import numpy as np

WORDS = ("a photo of the cat dog bird car house tree red blue green small large two three on in "
         "with picture drawing painting sky water grass").split()  # fmt: skip
LABELS = ["a cat", "a dog", "a red car"]
LENGTH = 64  # transformers' zero-shot pipeline pads SigLIP texts to 64 tokens
TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=LENGTH, bos_token_id=None)
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)
FIXED_SIZE, FIXED_PATCH = 32, 8
NAFLEX_PATCH, NAFLEX_BUDGET = 8, 24
# As in the released checkpoints' tokenizer_config.json: the text tower was trained without a
# padding mask, so the tokenizer returns none (with one, transformers would mask the padding).
INPUT_NAMES = ["input_ids"]


def _corpus():
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))) for _ in range(400)]


def train_sentencepiece(path, gemma):
    """A tiny SentencePiece model: T5's id layout (SigLIP 1) or Gemma's (SigLIP 2)."""
    import sentencepiece as spm

    if gemma:
        options = dict(model_type="bpe", vocab_size=320, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                       pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
                       unk_piece="<unk>", user_defined_symbols=["<mask>"], byte_fallback=True,
                       add_dummy_prefix=False, remove_extra_whitespaces=False,
                       allow_whitespace_only_pieces=True,
                       normalization_rule_name="identity")  # fmt: skip
    else:
        options = dict(model_type="unigram", vocab_size=60, pad_id=0, eos_id=1, unk_id=2,
                       bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
                       unk_piece="<unk>")  # fmt: skip
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_corpus()), model_writer=model,
                                   hard_vocab_limit=False, character_coverage=1.0,
                                   minloglevel=2, **options)  # fmt: skip
    path.write_bytes(model.getvalue())
    return path


def randomise(model, seed, *, std=0.3, logit_bias=-1.0):
    """Every parameter of a transformers SigLIP model re-drawn (docs/checkpoints.md, "Testing a
    port against transformers"): LayerNorm scales 1 +- 0.1, biases N(0, 0.1), everything else
    N(0, std) (0.3 here: large enough that images and texts score apart); `logit_scale` log 10."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            elif name.endswith("bias") and "logit" not in name:
                param.normal_(0.0, 0.1)
            else:
                param.normal_(0.0, std)
        if hasattr(model, "logit_scale"):
            model.logit_scale.fill_(math.log(10.0))
            model.logit_bias.fill_(logit_bias)
    return model.eval()


def save_siglip(folder, work):
    """A SigLIP 1 fixed-resolution checkpoint folder (bicubic 32x32, T5-style vocabulary)."""
    import transformers

    proto = train_sentencepiece(work / "t5.model", gemma=False)
    tokenizer = transformers.SiglipTokenizer(vocab_file=str(proto), model_max_length=LENGTH,
                                             model_input_names=INPUT_NAMES)
    image_processor = transformers.SiglipImageProcessor(
        size={"height": FIXED_SIZE, "width": FIXED_SIZE}, resample=3)
    config = transformers.SiglipConfig(
        text_config=dict(TEXT, vocab_size=tokenizer.vocab_size, pad_token_id=1, eos_token_id=1),
        vision_config=dict(VISION, image_size=FIXED_SIZE, patch_size=FIXED_PATCH))
    model = randomise(transformers.SiglipModel(config), seed=1)
    model.save_pretrained(folder)
    transformers.SiglipProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def save_siglip2(folder, work):
    """A SigLIP 2 NaFlex checkpoint folder (8-pixel patches, budget 24, Gemma-style vocabulary).

    `Siglip2Tokenizer.save_pretrained` writes `tokenizer.json`; released checkpoints ship the
    SentencePiece `tokenizer.model` beside it, and so does this folder.
    """
    import transformers

    source = work / "gemma"
    source.mkdir()
    proto = train_sentencepiece(source / "tokenizer.model", gemma=True)
    tokenizer = transformers.Siglip2Tokenizer.from_pretrained(
        str(source), add_bos_token=False, add_eos_token=True, padding_side="right",
        model_max_length=LENGTH, model_input_names=INPUT_NAMES)
    image_processor = transformers.Siglip2ImageProcessor(
        patch_size=NAFLEX_PATCH, max_num_patches=NAFLEX_BUDGET)
    config = transformers.Siglip2Config(
        text_config=dict(TEXT, vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1),
        vision_config=dict(VISION, patch_size=NAFLEX_PATCH, num_patches=16))
    model = randomise(transformers.Siglip2Model(config), seed=2)
    model.save_pretrained(folder)
    transformers.Siglip2Processor(image_processor, tokenizer).save_pretrained(folder)
    shutil.copy(proto, folder / "tokenizer.model")
    return folder


def hf_reference(folder, files, texts):
    """transformers' normalised image and text embeddings and its sigmoid probabilities."""
    import torch
    import transformers
    from transformers.image_utils import load_image

    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    processor = transformers.AutoProcessor.from_pretrained(str(folder))
    images = processor.image_processor(images=[load_image(f) for f in files], return_tensors="pt")
    ids = processor.tokenizer(texts, padding="max_length", max_length=LENGTH,
                              truncation=True, return_tensors="pt")["input_ids"]  # fmt: skip
    with torch.no_grad():
        out = model(input_ids=ids, **images)
    return {"images": out.image_embeds.numpy(), "texts": out.text_embeds.numpy(),
            "probabilities": torch.sigmoid(out.logits_per_image).numpy()}  # fmt: skip


def make_all(work):
    """Both checkpoint folders, the PNG files (as str) and a text file, under `work`."""
    texts = work / "texts.txt"
    texts.write_text("a cat\n\na dog on the grass\nA RED CAR!\n")  # an empty line is skipped
    return {
        "siglip": save_siglip(work / "siglip", work),
        "siglip2": save_siglip2(work / "siglip2", work),
        "pngs": [str(p) for p in write_pngs(work / "png")],
        "texts": str(texts),
    }


def write_pngs(folder):
    """Five PNG files of different sizes and modes (RGB, RGBA, grayscale, palette)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w, mode) in enumerate([(40, 56, "RGB"), (23, 31, "RGBA"), (64, 64, "L"),
                                      (17, 90, "RGB"), (50, 30, "P")]):  # fmt: skip
        base = np.cumsum(rng.integers(0, 9, (h, w, 3)), axis=1) % 256  # smooth-ish stripes
        image = Image.fromarray(base.astype(np.uint8), "RGB")
        if mode == "RGBA":
            alpha = rng.integers(0, 256, (h, w)).astype(np.uint8)
            image = Image.fromarray(np.dstack([np.asarray(image), alpha]), "RGBA")
        elif mode in ("L", "P"):
            image = image.convert(mode)
        paths.append(folder / f"image_{i}.png")
        image.save(paths[-1])
    return paths
