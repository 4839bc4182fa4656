"""Image <-> text retrieval on held-out handwritten digits with the model the demo trained.

Loads the model and tokenizer that `python -m keras_siglip demo` saved in `demo_output/`, then

1. searches the held-out digits with free-text queries (text -> image), and
2. measures recall@k both ways with `keras_siglip.tasks.retrieval_recall` on galleries of ten
   held-out digits (one per class, so every caption has exactly one right image), each image
   with one caption per held-out phrasing (several captions per image).

    python examples/retrieval.py [--output demo_output] [--query "a handwritten digit seven."]

Runs on the backend in KERAS_BACKEND.
"""

import argparse
import sys

import numpy as np

from keras_siglip.apps.digits import DEFAULTS, held_out_digits, load_trained, retrieval_groups
from keras_siglip.tasks import embed_images, embed_texts, retrieval_recall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=DEFAULTS["output"], help="the demo's output folder")
    parser.add_argument("--query", action="append", help="a text query (repeatable)")
    parser.add_argument("--top", type=int, default=8, help="images shown per query")
    args = parser.parse_args()
    try:
        model, tokenizer, metadata = load_trained(args.output)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1

    _, images, labels = held_out_digits(metadata)
    names = metadata["class_names"]
    image_embeddings = embed_images(model, images)  # normalised, (N, D)

    # 1. Text -> image search over all held-out digits.
    queries = args.query or ["a handwritten digit seven.", "a photo of the number 3.",
                             "a picture of the digit zero."]  # fmt: skip
    query_embeddings = embed_texts(model, queries, tokenizer=tokenizer)
    similarity = query_embeddings @ image_embeddings.T
    print(f"{len(labels)} held-out digits; top {args.top} images per query (true digit of each):")
    for query, row in zip(queries, similarity):
        best = np.argsort(-row, kind="stable")[: args.top]
        print(f"  {query!r:40} -> " + " ".join(names[labels[i]] for i in best))

    # 2. Recall@k on galleries of one image per digit, one caption per held-out phrasing.
    templates = metadata["eval_templates"]
    captions = [t.format(name) for name in names for t in templates]  # row: class * T + t
    caption_embeddings = embed_texts(model, captions, tokenizer=tokenizer)
    caption_embeddings = caption_embeddings.reshape(len(names), len(templates), -1)
    ks = (1, 2, 5)
    totals = {"image_to_text": np.zeros(len(ks)), "text_to_image": np.zeros(len(ks))}
    groups = retrieval_groups(labels, np.random.default_rng(metadata["seed"]))
    for group in groups:
        texts = caption_embeddings[labels[group]].reshape(-1, caption_embeddings.shape[-1])
        recall = retrieval_recall(
            model, image_embeddings=image_embeddings[group], text_embeddings=texts,
            text_image_ids=np.repeat(np.arange(len(group)), len(templates)), ks=ks,
        )  # fmt: skip
        for direction in totals:
            totals[direction] += [recall[direction][k] for k in ks]
    print(f"\nrecall@k over {len(groups)} galleries of {len(names)} digits "
          f"({len(templates)} captions per image):")  # fmt: skip
    print("  direction       " + "  ".join(f"R@{k:<4}" for k in ks))
    for direction, total in totals.items():
        print(f"  {direction:15} " + "  ".join(f"{v:6.1%}" for v in total / len(groups)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
