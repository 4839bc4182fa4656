"""Tests of `keras_siglip.preprocessing.Tokenizer` against transformers' `SiglipTokenizer` and
`Siglip2Tokenizer`, on tiny SentencePiece models trained here (T5-style and Gemma-style ids)."""

import io
import random
import warnings

import numpy as np
import pytest

from keras_siglip.preprocessing import Tokenizer, canonicalize_text

pytestmark = pytest.mark.backend_independent

spm = pytest.importorskip("sentencepiece")

L = 16

WORDS = (
    "a photo of the cat dog sitting on table red blue green car house tree man woman child "
    "playing with ball in park street city night day two small large old new picture close up"
).split()
EXTRA = ["café", "naïve", "résumé", "über", "señor", "crème brûlée", "straße", "猫の写真", "一只狗",
         "고양이", "фото кошки", "😀", "🐱", "123", "4567"]  # fmt: skip
# Pieces for the comparison strings: case, punctuation, accents, CJK, emoji, odd whitespace.
PIECES = ["A", "photo", "of", "THE", "Cat", "dog!", "(red)", "café", "Über", "ÉTÉ", "naïve", "猫の写真",
          "一只狗", "😀", "🐱", "  ", "\t", "\n", "...", "-", "_", "it's", "e.g.", "123", "4,567",
          "kaTOri", "zenbar", "x" * 30, "ΣΑΣ", "İstanbul", "ß", "▁", "a_b", "o'clock", "\u00a0",
          "\u3000", "#1", "50%", "{}", "~"]  # fmt: skip


def _corpus():
    rng = random.Random(0)
    syllables = ["ka", "to", "ri", "men", "sa", "lo", "pe", "qu", "zen", "bar", "tik", "ol", "an"]
    words = WORDS + ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(400)]
    lines = []
    for _ in range(3000):
        line = " ".join(rng.choice(words + EXTRA) for _ in range(rng.randint(3, 15)))
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "!", "?", ","])
        lines.append(line)
    return lines


def _train(path, **kwargs):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=model,
        hard_vocab_limit=False,
        character_coverage=1.0,
        minloglevel=2,
        **kwargs,
    )
    path.write_bytes(model.getvalue())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spm")
    # T5 vocabulary layout (c4_en, mc4): <pad>=0, </s>=1, <unk>=2, no BOS; unigram.
    t5 = _train(
        tmp / "t5.model", vocab_size=500, model_type="unigram", pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
    )  # fmt: skip
    # Gemma layout: <pad>=0, <eos>=1, <bos>=2, <unk>=3, <mask>=4; BPE with byte fallback, no
    # dummy prefix, whitespace kept as it is.
    gemma_dir = tmp / "gemma"
    gemma_dir.mkdir()
    gemma = _train(
        gemma_dir / "tokenizer.model", vocab_size=900, model_type="bpe", pad_id=0, eos_id=1,
        bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=["<mask>"], byte_fallback=True,
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True, normalization_rule_name="identity",
    )  # fmt: skip
    return {"t5": t5, "gemma": gemma, "gemma_dir": gemma_dir}


@pytest.fixture(scope="module")
def texts():
    rng = random.Random(1)
    out = ["", " ", "a", "A Photo, of a CAT!!", "   leading and trailing   ", "tabs\tand\nnewlines",
           "x" * 200, "photo " * 40, "ÉTÉ À PARIS", "ΣΑΣ"]  # fmt: skip
    for _ in range(300):
        sep = rng.choice(["", " "])
        n_words = rng.randint(1, 25)
        words = [rng.choice(PIECES) + rng.choice(["", " ", "  "]) for _ in range(n_words)]
        out.append(sep.join(words))
    return out


@pytest.fixture(scope="module")
def hf_siglip(models):
    transformers = pytest.importorskip("transformers")
    return transformers.SiglipTokenizer(vocab_file=str(models["t5"]))


@pytest.fixture(scope="module")
def hf_siglip2(models):
    transformers = pytest.importorskip("transformers")
    # v5 builds Siglip2Tokenizer (Gemma BPE + lowercasing) from a folder holding tokenizer.model.
    return transformers.Siglip2Tokenizer.from_pretrained(
        str(models["gemma_dir"]), add_bos_token=False, add_eos_token=True, padding_side="right"
    )


def _hf_ids(tokenizer, text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tokenizer(text, padding="max_length", truncation=True, max_length=L)
    return out["input_ids"]


def test_siglip_matches_transformers(models, texts, hf_siglip):
    tok = Tokenizer(str(models["t5"]), flavor="siglip", sequence_length=L)
    ours = tok(texts)
    assert ours.dtype == np.int32 and ours.shape == (len(texts), L)
    for text, row in zip(texts, ours):
        assert row.tolist() == _hf_ids(hf_siglip, text), repr(text)


def test_siglip2_matches_transformers(models, texts, hf_siglip2):
    tok = Tokenizer(models["gemma"].read_bytes(), flavor="siglip2", sequence_length=L)
    ours = tok(texts)
    assert ours.dtype == np.int32 and ours.shape == (len(texts), L)
    for text, row in zip(texts, ours):
        assert row.tolist() == _hf_ids(hf_siglip2, text), repr(text)


def test_siglip2_matches_gemma_tokenizer_after_explicit_lowercasing(models, texts):
    # Fixed-resolution SigLIP 2 checkpoints ship a plain GemmaTokenizer, which does not lowercase
    # (docs/preprocessing.md, "SigLIP 2 text"): it agrees with us only on lowercased text.
    transformers = pytest.importorskip("transformers")
    gemma = transformers.GemmaTokenizer.from_pretrained(
        str(models["gemma_dir"]), add_bos_token=False, add_eos_token=True, padding_side="right"
    )
    tok = Tokenizer(models["gemma"], flavor="siglip2", sequence_length=L)
    for text in texts[:100]:
        lowered = "".join(c.lower() for c in text)
        assert tok(text)[0].tolist() == _hf_ids(gemma, lowered), repr(text)
    assert tok("A CAT")[0].tolist() != _hf_ids(gemma, "A CAT")


@pytest.mark.parametrize("flavor", ["siglip", "siglip2"])
def test_sticky_eos_on_long_texts(models, flavor, hf_siglip, hf_siglip2):
    # transformers' truncation (which reserves room for the EOS it appends) gives the same ids
    # as big_vision's sticky EOS, for texts shorter than, equal to and longer than L
    # (docs/preprocessing.md, "Open points").
    path = models["t5"] if flavor == "siglip" else models["gemma"]
    hf = hf_siglip if flavor == "siglip" else hf_siglip2
    tok = Tokenizer(path, flavor=flavor, sequence_length=L)
    untruncated = Tokenizer(path, flavor=flavor, sequence_length=1000)
    seen = set()
    for n_words in range(1, 40):
        text = " ".join(["photo", "of", "a", "red", "car"] * 8)
        text = " ".join(text.split()[:n_words])
        pieces = untruncated.tokenize(text)[:-1]  # without the EOS
        n = len(pieces)
        row = tok(text)[0].tolist()
        if n + 1 >= L:  # with EOS the text fills or overflows L: cut, keep the EOS last
            assert row == pieces[: L - 1] + [tok.eos_id]
            seen.add("exact" if n + 1 == L else "cut")
        else:
            assert row == pieces + [tok.eos_id] + [tok.pad_id] * (L - n - 1)
            seen.add("padded")
        assert row == _hf_ids(hf, text)
    assert seen == {"padded", "exact", "cut"}


@pytest.fixture(scope="module")
def a_is_2(tmp_path_factory):
    # A vocabulary with id("a") = 2 and </s> = 1, as in big_vision's tokenize docstring
    # (docs/preprocessing.md, "SigLIP 1 text").
    path = tmp_path_factory.mktemp("spm_a") / "a.model"
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c aa ab ba abc cab bca"] * 50), model_writer=model,
        vocab_size=12, hard_vocab_limit=False, model_type="unigram", pad_id=0, eos_id=1,
        unk_id=3, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        user_defined_symbols=["a"], add_dummy_prefix=False, minloglevel=2,
    )  # fmt: skip
    path.write_bytes(model.getvalue())
    return path


@pytest.mark.parametrize(
    "flavor, expected",
    [
        # eos="sticky", pad_value=1 (SigLIP 1)
        ("siglip", {"a": [2, 1, 1], "aa": [2, 2, 1], "aaa": [2, 2, 1]}),
        # eos="sticky", pad_value=0 (SigLIP 2)
        ("siglip2", {"a": [2, 1, 0], "aa": [2, 2, 1], "aaa": [2, 2, 1]}),
    ],
)
def test_big_vision_docstring_vectors(a_is_2, flavor, expected):
    tok = Tokenizer(a_is_2, flavor=flavor, sequence_length=3)
    for text, ids in expected.items():
        assert tok(text)[0].tolist() == ids, text


def test_canonicalize_text():
    assert canonicalize_text("A Photo, of a CAT!!") == "a photo of a cat"
    assert canonicalize_text("  black_and-white\t\nphoto. ") == "blackandwhite photo"
    assert canonicalize_text("ÉTÉ") == "été"


def test_special_token_strings_are_plain_text(models):
    # Unlike transformers (which maps "</s>" in the text to the EOS id), the text goes to
    # SentencePiece as it is, as in big_vision: EOS appears only at the end.
    tok = Tokenizer(models["t5"], flavor="siglip2", sequence_length=L)
    row = tok("a </s> b")[0].tolist()
    assert row.index(tok.eos_id) == len(row) - row[::-1].index(tok.eos_id) - 1


def test_single_string_gives_one_row_and_detokenize_round_trips(models):
    tok = Tokenizer(models["t5"], flavor="siglip", sequence_length=L)
    assert tok("A photo of a cat.").shape == (1, L)
    assert tok([]).shape == (0, L)
    ids = tok(["A photo of a cat.", "Two dogs!"])
    assert tok.detokenize(ids) == ["a photo of a cat", "two dogs"]
    tok2 = Tokenizer(models["gemma"], flavor="siglip2", sequence_length=L)
    assert tok2.detokenize(tok2("A Photo, of a CAT!!")[0]) == "a photo, of a cat!!"
    assert tok2.pad_id == 0 and tok2.eos_id == 1 and tok.pad_id == tok.eos_id == 1


def test_path_and_bytes_give_the_same_tokenizer(models):
    a = Tokenizer(models["t5"], flavor="siglip", sequence_length=L)
    b = Tokenizer(models["t5"].read_bytes(), flavor="siglip", sequence_length=L)
    np.testing.assert_array_equal(a(["a red car", "über café"]), b(["a red car", "über café"]))
    assert a.vocabulary_size == b.vocabulary_size == 500


def test_invalid_arguments_raise(models, tmp_path):
    with pytest.raises(ValueError, match="siglip2"):
        Tokenizer(models["t5"], flavor="gemma")
    with pytest.raises(ValueError, match="sequence_length"):
        Tokenizer(models["t5"], sequence_length=0)
    with pytest.raises(FileNotFoundError):
        Tokenizer(tmp_path / "missing.model")
    with pytest.raises(TypeError):
        Tokenizer(models["t5"])([b"bytes"])
    with pytest.raises(TypeError):
        Tokenizer(12345)
