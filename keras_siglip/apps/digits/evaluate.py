"""The digits demo's evaluation on held-out images: zero-shot accuracy and retrieval recall@1."""

import numpy as np

from keras_siglip import tasks
from keras_siglip.apps.digits.data import DIGIT_WORDS, EVAL_TEMPLATES


def retrieval_groups(test_labels, rng):
    """Held-out images in galleries of ten, one per digit: `(num_groups, 10)` indices.

    Captions say only which digit is shown, so in a gallery with two sevens
    both sevens' captions would be right for either; recall over the whole
    held-out set would measure chance among same-class images. One image of
    each digit per gallery makes every caption's image unique.
    """
    per_class = [rng.permutation(np.flatnonzero(test_labels == c)) for c in range(10)]
    groups = min(len(p) for p in per_class)
    return np.stack([p[:groups] for p in per_class], axis=1)


def evaluate(model, tokenizer, images, labels, rng, batch_size=128):
    """Zero-shot accuracy, probabilities and retrieval recall@1 on held-out images."""
    image_embeddings = tasks.embed_images(model, images, batch_size=batch_size)
    result = tasks.zero_shot_classify(
        model, tokenizer, None, DIGIT_WORDS, EVAL_TEMPLATES,
        image_embeddings=image_embeddings, batch_size=batch_size,
    )  # fmt: skip
    accuracy = float(np.mean(result.top_k[:, 0] == labels))

    # Every image of a gallery gets one caption per held-out phrasing.
    prompts = [t.format(word) for word in DIGIT_WORDS for t in EVAL_TEMPLATES]
    prompt_embeddings = tasks.embed_texts(
        model, prompts, tokenizer=tokenizer, batch_size=batch_size
    )
    prompt_embeddings = prompt_embeddings.reshape(10, len(EVAL_TEMPLATES), -1)
    recalls = {"image_to_text": [], "text_to_image": []}
    for group in retrieval_groups(labels, rng):
        texts = prompt_embeddings[labels[group]].reshape(-1, prompt_embeddings.shape[-1])
        recall = tasks.retrieval_recall(
            None, image_embeddings=image_embeddings[group], text_embeddings=texts,
            text_image_ids=np.repeat(np.arange(len(group)), len(EVAL_TEMPLATES)), ks=(1,),
        )  # fmt: skip
        for key in recalls:
            recalls[key].append(recall[key][1])
    return {
        "zero_shot_accuracy": accuracy,
        "recall@1_image_to_text": float(np.mean(recalls["image_to_text"])),
        "recall@1_text_to_image": float(np.mean(recalls["text_to_image"])),
        "probabilities": result.probabilities,
    }
