"""Zero-shot classification and retrieval (`keras_siglip.tasks`) against direct NumPy sums."""

import numpy as np
import pytest

from keras_siglip import tasks
from keras_siglip.testing import build_tiny
from tests._grad import to_numpy

CLASSES = ["cat", "dog", "red car", "tree"]
TEMPLATES = ("a photo of a {}.", "{}", "a drawing of the {} here")


class WordTokenizer:
    """Stands in for `Tokenizer`: one id per word (a stable hash), EOS-padded to `length`."""

    def __init__(self, vocabulary_size, length):
        self.vocabulary_size, self.length = vocabulary_size, length

    def __call__(self, texts):
        out = np.ones((len(texts), self.length), np.int32)
        for i, text in enumerate(texts):
            ids = [3 + sum(map(ord, w)) % (self.vocabulary_size - 3) for w in text.split()]
            out[i, : min(len(ids), self.length - 1)] = ids[: self.length - 1]
        return out


@pytest.fixture(scope="module")
def tiny():
    model = build_tiny("fixture_like", seed=3)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (5, *model.vision_encoder.image_size, 3)).astype(np.float32)
    text = model.text_encoder
    tokenizer = WordTokenizer(text.vocabulary_size, text.sequence_length)
    return model, tokenizer, images


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def test_zero_shot_probabilities_are_the_sigmoid_of_template_averaged_logits(tiny):
    model, tokenizer, images = tiny
    result = tasks.zero_shot_classify(
        model, tokenizer, images, CLASSES, TEMPLATES, batch_size=2, top_k=3
    )

    # Directly: encode every prompt, normalise, average over templates, renormalise.
    image = _unit(to_numpy(model.encode_images(images)))
    prompts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    text = _unit(to_numpy(model.encode_texts(tokenizer(prompts))))
    text = _unit(text.reshape(len(CLASSES), len(TEMPLATES), -1).mean(axis=1))
    scale = np.exp(to_numpy(model.logit_scale)[0])
    bias = to_numpy(model.logit_bias)[0]
    expected = 1.0 / (1.0 + np.exp(-(scale * image @ text.T + bias)))

    assert result.probabilities.shape == (5, len(CLASSES))
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(result.top_k, np.argsort(-expected, axis=1)[:, :3])
    # A per-pair sigmoid, not a softmax: the rows need not sum to 1.
    assert not np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-3)


def test_zero_shot_from_embeddings_equals_from_images(tiny):
    model, tokenizer, images = tiny
    from_images = tasks.zero_shot_classify(model, tokenizer, images, CLASSES, "a {}")
    embeddings = to_numpy(model.encode_images(images))  # not normalised: normalised inside
    from_embeddings = tasks.zero_shot_classify(
        model, tokenizer, None, CLASSES, "a {}", image_embeddings=embeddings
    )
    np.testing.assert_allclose(from_images.probabilities, from_embeddings.probabilities, atol=1e-6)
    assert from_images.top_k.shape == (5, 1)


def test_batched_encoding_matches_one_batch(tiny):
    model, _, images = tiny
    # 5 images in batches of 2: the last batch is padded to 2 and the padding dropped.
    batched = tasks.embed_images(model, images, batch_size=2, progress=True)
    whole = _unit(to_numpy(model.encode_images(images)))
    assert batched.shape == whole.shape
    np.testing.assert_allclose(batched, whole, atol=1e-5)


def test_zero_shot_argument_errors(tiny):
    model, tokenizer, images = tiny
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        tasks.zero_shot_classify(model, tokenizer, images, CLASSES, "a photo")
    with pytest.raises(ValueError, match="top_k"):
        tasks.zero_shot_classify(model, tokenizer, images, CLASSES, top_k=5)
    with pytest.raises(ValueError, match="exactly one"):
        tasks.zero_shot_classify(model, tokenizer, None, CLASSES)


def test_retrieval_with_the_model_matches_its_embeddings(tiny):
    model, tokenizer, images = tiny
    texts = [f"caption number {i} of {CLASSES[i % 4]}" for i in range(5)]
    from_model = tasks.retrieval_recall(
        model, images, texts, tokenizer=tokenizer, ks=(1, 2, 5), batch_size=3
    )
    image = to_numpy(model.encode_images(images))
    text = to_numpy(model.encode_texts(tokenizer(texts)))
    similarity = _unit(image) @ _unit(text).T
    i2t_rank = np.sum(similarity >= np.diag(similarity)[:, None], axis=1) - 1
    t2i_rank = np.sum(similarity >= np.diag(similarity)[None, :], axis=0) - 1
    for k in (1, 2, 5):
        assert from_model["image_to_text"][k] == pytest.approx(np.mean(i2t_rank < k))
        assert from_model["text_to_image"][k] == pytest.approx(np.mean(t2i_rank < k))
    assert from_model["image_to_text"][5] == 1.0


@pytest.mark.backend_independent
def test_retrieval_recall_on_a_hand_computed_example():
    # Three images, four captions; captions 0 and 1 both describe image 0.
    images = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    texts = np.array([[1.0, 0.1], [0.0, 1.0], [0.9, 0.5], [-1.0, 0.0]])
    owners = [0, 0, 1, 2]
    # Cosines (rows images, columns texts):
    #   image 0: [ .995, 0,  .874, -1]  best own caption .995, nothing above -> rank 0
    #   image 1: [ .100, 1,  .486,  0]  own .486 < text 1 (image 0's) -> rank 1
    #   image 2: [-.995, 0, -.874,  1]  own 1 -> rank 0
    # Texts: 0 -> rank 0; 1 (own 0) ties image 2's 0 and trails image 1's 1 -> rank 2;
    #        2 (own .486) trails image 0's .874 -> rank 1; 3 -> rank 0.
    recall = tasks.retrieval_recall(
        None, image_embeddings=images, text_embeddings=texts, text_image_ids=owners, ks=(1, 2, 3)
    )
    assert recall["image_to_text"] == pytest.approx({1: 2 / 3, 2: 1.0, 3: 1.0})
    assert recall["text_to_image"] == pytest.approx({1: 2 / 4, 2: 3 / 4, 3: 1.0})


@pytest.mark.backend_independent
def test_retrieval_recall_default_pairing_and_errors():
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((6, 8))
    perfect = tasks.retrieval_recall(None, image_embeddings=embeddings,
                                     text_embeddings=3.0 * embeddings, ks=(1,))  # fmt: skip
    assert perfect == {"image_to_text": {1: 1.0}, "text_to_image": {1: 1.0}}
    # Everything on one point: every query ties, and ties count as misses.
    collapsed = tasks.retrieval_recall(
        None, image_embeddings=np.ones((4, 3)), text_embeddings=np.ones((4, 3)), ks=(1, 3)
    )
    assert collapsed == {"image_to_text": {1: 0.0, 3: 0.0}, "text_to_image": {1: 0.0, 3: 0.0}}
    with pytest.raises(ValueError, match="text j"):
        tasks.retrieval_recall(None, image_embeddings=embeddings, text_embeddings=embeddings[:5])
    with pytest.raises(ValueError, match="at least one caption"):
        tasks.retrieval_recall(None, image_embeddings=embeddings, text_embeddings=embeddings,
                               text_image_ids=[0, 0, 1, 2, 3, 4])  # fmt: skip
