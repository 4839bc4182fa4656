"""The digits demo's model and its training: towers, optimizer, the epoch loop and its history."""

import contextlib
import math
import sys
import time

import keras
import numpy as np

from keras_siglip import SigLIP, SigLIPTextEncoder, SigLIPVisionEncoder
from keras_siglip.apps.digits.data import SEQUENCE_LENGTH


def build_model(vocabulary_size, image_size, patch_size, width, depth, num_heads, batch_size):
    vision = SigLIPVisionEncoder(
        image_size, patch_size, width=width, depth=depth, mlp_dim=4 * width,
        num_heads=num_heads, name="vision_encoder",
    )  # fmt: skip
    text = SigLIPTextEncoder(
        vocabulary_size, SEQUENCE_LENGTH, width=width, depth=depth, mlp_dim=4 * width,
        num_heads=num_heads, name="text_encoder",
    )  # fmt: skip
    # The paper's logit_bias init of -10 suits batches of tens of thousands (a prior of one
    # positive in ~e^10 pairs). Adam moves the bias by about one learning rate per step, so
    # in a run of ~1000 steps it would hardly leave -10 and every probability would stay
    # below sigmoid(t - 10) ~ 0.7 (t reaches ~11). Start from this batch's prior instead:
    # sigmoid(b) = 1 / batch_size.
    bias = -math.log(max(batch_size - 1, 1))
    return SigLIP(vision, text, logit_bias_init=bias, name="siglip_digits")


def compile_model(model, learning_rate, total_steps):
    """AdamW with a linear warm-up to `learning_rate` and a cosine decay over `total_steps`."""
    warmup = max(1, total_steps // 20)
    learning_rate = keras.optimizers.schedules.CosineDecay(
        0.0, max(1, total_steps - warmup), warmup_target=learning_rate, warmup_steps=warmup
    )
    # beta_2 = 0.95 as in the SigLIP paper. With Adam's default 0.999 the second moment
    # remembers the large gradients of the first steps (while the towers' shared component
    # settles), the steps stay tiny for hundreds of steps afterwards, and training sits on
    # a plateau with every image mapped to one point: chance accuracy after 6 epochs of the
    # default run with 0.999, 89% with 0.95.
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=1e-4, beta_2=0.95)
    optimizer.exclude_from_weight_decay(var_names=["logit_scale", "logit_bias"])
    model.compile(optimizer=optimizer)


class TrainingHistory(keras.callbacks.Callback):
    """Per-step losses, the learned temperature and bias per epoch, and the progress bar.

    `fit` runs once per epoch (see `train`), so Keras' own bar would count
    the epochs of each call; this one counts them out of the whole run.
    """

    def __init__(self, epochs, steps_per_epoch, verbose):
        super().__init__()
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        # A live bar on a terminal, one line per epoch in a log file.
        self.verbose = 0 if not verbose else (1 if sys.stdout.isatty() else 2)
        self.step_losses = []
        self.epoch_ends = []
        self.temperature = []
        self.bias = []

    def on_epoch_begin(self, epoch, logs=None):
        self._previous_mean = 0.0
        self._step = 0
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}")
        self._bar = keras.utils.Progbar(self.steps_per_epoch, verbose=self.verbose)

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the running mean of the epoch; recover this step's loss from it.
        mean = float(logs["loss"])
        self._step += 1
        self.step_losses.append(self._step * mean - (self._step - 1) * self._previous_mean)
        self._previous_mean = mean
        if self.verbose:
            self._bar.update(self._step, [("loss", self.step_losses[-1])])

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(len(self.step_losses))
        scale = keras.ops.convert_to_numpy(self.model.logit_scale)[0]
        self.temperature.append(float(np.exp(scale)))
        self.bias.append(float(keras.ops.convert_to_numpy(self.model.logit_bias)[0]))

    def last_epoch_losses(self):
        return self.step_losses[-(self.epoch_ends[-1] - ([0] + self.epoch_ends)[-2]):]


def train(model, images, caption_ids, labels, schedule, phrasing, total_steps, verbose):
    """Train a compiled `model` on `total_steps` batches of `schedule`.

    Args:
        images: the training images; `schedule` indexes them, `labels` are theirs.
        caption_ids: `(10, phrasings, L)` token ids (`data.caption_token_ids`).
        schedule, phrasing: `(epochs, steps_per_epoch, batch_size)` image indices and
            the caption phrasing of each (`data.training_plan`).

    Returns:
        `(TrainingHistory, seconds spent training)`.
    """
    epochs, steps_per_epoch, batch_size = schedule.shape
    history = TrainingHistory(epochs, steps_per_epoch, verbose)
    start = time.perf_counter()
    done = 0
    for epoch in range(epochs):
        n = min(steps_per_epoch, total_steps - done)
        batch = schedule[epoch, :n].reshape(-1)
        x = {
            "images": images[batch],
            "token_ids": caption_ids[labels[batch], phrasing[epoch, :n].reshape(-1)],
        }
        # One fit() per epoch, in the schedule's order, because each epoch draws new
        # phrasings. The compiled train step is built once and reused by every call.
        model.fit(x, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch,
                  shuffle=False, callbacks=[history], verbose=0)  # fmt: skip
        done += n
    return history, time.perf_counter() - start


@contextlib.contextmanager
def few_threads():
    """One intra-op thread for torch while the demo runs (restored afterwards).

    The demo's matrices are tiny, so the cost of each op is its thread
    synchronisation: with more than one thread, torch's threads spin against each
    other on a machine shared with other work, and a step takes tens of times
    longer than on one thread. JAX and TensorFlow compile the step and are unaffected.
    """
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
