"""Splitting a batch of model inputs (an array or a dict of arrays) into fixed-size pieces."""

import numpy as np

from keras_siglip.arguments import check_int


def num_examples(inputs):
    """The batch size of an array or of a dict of arrays (its first entry)."""
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


def batches(inputs, batch_size, pad=False):
    """Yield `(piece, count)`: rows `[start, start + batch_size)` of `inputs` and how many are real.

    With `pad=True` the last piece is edge-padded to `batch_size` rows when the inputs hold more
    than one batch, so a compiled function sees one shape only; `count` tells how many of its
    rows to keep. Pieces of NumPy inputs are NumPy arrays; other tensors are sliced as they are.
    """
    batch_size = check_int("batch_size", batch_size)
    total = num_examples(inputs)
    pad_to = batch_size if pad and total > batch_size else None

    def take(x, start, stop):
        part = x[start:stop]
        if pad_to is not None and stop - start < pad_to:
            part = np.asarray(part)
            widths = [(0, pad_to - len(part))] + [(0, 0)] * (part.ndim - 1)
            part = np.pad(part, widths, mode="edge")
        return part

    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        if isinstance(inputs, dict):
            piece = {k: take(v, start, stop) for k, v in inputs.items()}
        else:
            piece = take(inputs, start, stop)
        yield piece, stop - start
