"""SentencePiece tokenizer with SigLIP's text conventions (docs/preprocessing.md).

The text tower pools the **last** position and has no attention mask, so every
sequence must be exactly ``sequence_length`` long and end the way the model
was trained:

* ``"siglip"`` (SigLIP 1, T5 vocabularies; transformers ``SiglipTokenizer``):
  canonicalise (lowercase, delete ``string.punctuation``, collapse whitespace,
  strip), append EOS, pad with EOS. The last position is always EOS.
* ``"siglip2"`` (Gemma vocabulary; transformers ``Siglip2Tokenizer``, big_vision
  ``lower|tok(bos="no", eos="sticky")``): lowercase only, append EOS, pad with
  ``<pad>`` (0). The last position is usually PAD, by design.

Both add no BOS and use big_vision's **sticky EOS**: a text whose tokens plus
EOS reach ``sequence_length`` is cut to ``tokens[:L - 1] + [EOS]``, so the EOS
survives truncation.

Lowercasing follows transformers, which lowercases all of Unicode: SigLIP 1
with Python's ``str.lower``, SigLIP 2 character by character (the tokenizers
library's ``Lowercase``, so a final capital sigma becomes "σ", not "ς").
big_vision's ``tf.strings.lower`` lowercases ASCII letters only, so texts with
non-ASCII capitals ("ÉTÉ") tokenise differently there.

Text is passed to SentencePiece as it is: literal special-token strings such as
"</s>" or "<pad>" inside a text are ordinary characters (as in big_vision),
whereas transformers turns them into the special ids.
"""

import os
import re
import string

import numpy as np

from keras_siglip.arguments import check_choice, check_int

FLAVORS = ("siglip", "siglip2")

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def canonicalize_text(text):
    """SigLIP 1 text canonicalisation (transformers ``SiglipTokenizer``).

    Lowercase, delete every ``string.punctuation`` character, collapse runs of
    whitespace to one space and strip: ``"A Photo, of a CAT!!"`` becomes
    ``"a photo of a cat"``. Punctuation is deleted, not replaced by a space, so
    ``"black_and_white"`` becomes ``"blackandwhite"``.
    """
    text = text.lower().translate(_PUNCTUATION)
    return re.sub(r"\s+", " ", text).strip()


def _load_sentencepiece(proto):
    try:
        import sentencepiece
    except ImportError as e:
        raise ImportError(
            "Tokenizer needs the `sentencepiece` package: pip install sentencepiece "
            "(or pip install 'keras-siglip[text]')."
        ) from e
    processor = sentencepiece.SentencePieceProcessor()
    if isinstance(proto, (bytes, bytearray)):
        load, what = (lambda: processor.LoadFromSerializedProto(bytes(proto))), "The bytes given"
    elif isinstance(proto, (str, os.PathLike)):
        if not os.path.isfile(proto):
            raise FileNotFoundError(f"SentencePiece model file not found: {proto!r}.")
        load, what = (lambda: processor.Load(os.fspath(proto))), os.fspath(proto)
    else:
        raise TypeError(
            f"proto must be a path to a SentencePiece .model file or its bytes, got {type(proto)}."
        )
    try:
        load()
    except (RuntimeError, OSError) as error:  # SentencePiece's "INTERNAL: could not parse ..."
        raise ValueError(
            f"{what} is not a readable SentencePiece model ({str(error).strip()}): truncated, "
            "corrupt, or another kind of file (a tokenizer.json is not one). Pass the "
            "checkpoint's spiece.model / tokenizer.model."
        ) from error
    return processor


def _check_text(i, text):
    """A str SentencePiece can take: valid Unicode (no lone surrogates)."""
    if not isinstance(text, str):
        raise TypeError(f"Text {i} is a {type(text).__name__}, not a str.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"Text {i} is not valid Unicode: it holds the lone surrogate "
            f"U+{ord(text[error.start]):04X} at position {error.start} (often text decoded with "
            "errors='surrogateescape', or half of a UTF-16 pair). Clean it first, e.g. "
            "text.encode('utf-8', 'replace').decode('utf-8')."
        ) from None
    return text


class Tokenizer:
    """SentencePiece tokenizer producing fixed-length SigLIP / SigLIP 2 token ids.

    Args:
        proto: path to a SentencePiece ``.model`` file, or its serialized bytes.
        flavor: ``"siglip"`` (SigLIP 1) or ``"siglip2"`` (SigLIP 2); see the
            module docstring.
        sequence_length: int ``L``, the text tower's length (64; 16 for SigLIP 1
            So400m/14@224).

    Calling the tokenizer on a list of ``B`` strings returns int32 ``(B, L)``;
    a single string gives ``(1, L)``.

    Example:
        >>> tok = Tokenizer("c4_en.model", flavor="siglip", sequence_length=16)
        >>> ids = tok(["A photo of a cat.", "a dog"])   # int32 (2, 16)
        >>> tok.detokenize(ids)
        ['a photo of a cat', 'a dog']
    """

    def __init__(self, proto, flavor="siglip", sequence_length=64):
        self.flavor = check_choice("flavor", flavor, FLAVORS)
        self.sequence_length = check_int("sequence_length", sequence_length)
        self._sp = _load_sentencepiece(proto)
        self.eos_id = self._sp.eos_id()
        if self.eos_id < 0:
            raise ValueError("The SentencePiece model defines no EOS piece; SigLIP needs one.")
        if flavor == "siglip":
            # T5 vocabularies: pad with EOS so the pooled last position is EOS.
            self.pad_id = self.eos_id
        else:
            self.pad_id = self._sp.pad_id()
            if self.pad_id < 0:
                raise ValueError(
                    "The SentencePiece model defines no <pad> piece; siglip2 needs one."
                )

    @property
    def vocabulary_size(self):
        """Number of pieces in the SentencePiece model (``V``)."""
        return self._sp.get_piece_size()

    def normalize(self, text):
        """The flavor's text normalisation, applied before SentencePiece."""
        if self.flavor == "siglip":
            return canonicalize_text(text)
        # Per character, like the tokenizers library (no final-sigma rule).
        return "".join(c.lower() for c in text)

    def tokenize(self, text):
        """Token ids of one string, with EOS and sticky truncation, unpadded."""
        ids = self._sp.encode(self.normalize(_check_text(0, text))) + [self.eos_id]
        if len(ids) >= self.sequence_length:
            # Sticky EOS: keep the EOS when cutting, so the last position is
            # always EOS for long texts.
            ids = ids[: self.sequence_length - 1] + [self.eos_id]
        return ids

    def __call__(self, texts):
        """Tokenises ``texts`` (a str or a list of str) to int32 ``(B, L)``."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple, np.ndarray)):
            raise TypeError(
                f"texts must be a str or a list of str; received {type(texts).__name__}."
            )
        texts = [_check_text(i, text) for i, text in enumerate(texts)]
        out = np.full((len(texts), self.sequence_length), self.pad_id, np.int32)
        for i, text in enumerate(texts):
            ids = self.tokenize(text)
            out[i, : len(ids)] = ids
        return out

    def detokenize(self, token_ids):
        """Token ids ``(B, L)`` (or ``(L,)``) back to text, stopping at the first EOS.

        Returns a list of ``B`` strings (one string for a 1-D input). The text
        is the normalised one (lowercased, and without punctuation for
        ``"siglip"``).
        """
        token_ids = np.asarray(token_ids)
        if token_ids.ndim == 1:
            return self.detokenize(token_ids[None])[0]
        texts = []
        for row in token_ids.tolist():
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            texts.append(self._sp.decode([t for t in row if t != self.pad_id]))
        return texts
