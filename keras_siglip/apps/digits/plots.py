"""The digits demo's figures, drawn with matplotlib's object API (no pyplot state, no display)."""

import numpy as np

from keras_siglip.apps.digits.data import DIGIT_WORDS, EVAL_TEMPLATES


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_probabilities(path, probabilities, labels, accuracy, backend):
    """Every held-out image's probability per class prompt, and the mean per true digit."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    matrix = probabilities[order].T  # (10 prompts, N images)
    fig = _figure((13, 4.6))
    left, right = fig.subplots(1, 2, width_ratios=[3.2, 1])
    image = left.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis",
                        vmin=0.0, vmax=1.0)  # fmt: skip
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 0.5
    for x in bounds:
        left.axvline(x, color="white", linewidth=0.6, alpha=0.7)
    edges = np.concatenate([[-0.5], bounds, [len(labels) - 0.5]])
    left.set_xticks((edges[:-1] + edges[1:]) / 2, [str(c) for c in range(10)])
    left.set_yticks(range(10), [f"{c}: {w}" for c, w in enumerate(DIGIT_WORDS)])
    left.set_xlabel(f"held-out images ({len(labels)}), sorted by true digit")
    left.set_ylabel(
        f'class prompt: "{EVAL_TEMPLATES[0]}"\n'
        f"and {len(EVAL_TEMPLATES) - 1} more unseen phrasings, averaged",
        fontsize=9,
    )
    left.set_title(
        f"SigLIP on digits ({backend}): sigmoid(t·cos + b) per image-prompt pair; "
        f"zero-shot accuracy {accuracy:.1%}"
    )
    fig.colorbar(image, ax=left, label="probability", fraction=0.03)

    # Same orientation as the left panel: prompts down, true digits across.
    means = np.stack([probabilities[labels == c].mean(axis=0) for c in range(10)], axis=1)
    right.imshow(means, cmap="viridis", vmin=0.0, vmax=1.0)
    for i in range(10):
        for j in range(10):
            text = f"{means[i, j]:.2f}".lstrip("0") if means[i, j] < 0.995 else "1"
            right.text(j, i, text, ha="center", va="center", fontsize=6,
                       color="black" if means[i, j] > 0.5 else "white")  # fmt: skip
    right.set_xticks(range(10), range(10))
    right.set_yticks(range(10), range(10))
    right.set_xlabel("true digit")
    right.set_ylabel("class prompt")
    right.set_title("mean probability per digit")
    fig.savefig(path, dpi=110)


def plot_training_curve(path, history, backend):
    """The loss per step and per epoch, and the learned temperature and bias per epoch."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

    fig = _figure((10, 3.8))
    loss_ax, param_ax = fig.subplots(1, 2, width_ratios=[2, 1])
    steps = np.arange(1, len(history.step_losses) + 1)
    loss_ax.plot(steps, history.step_losses, linewidth=0.6, alpha=0.5, label="per step")
    starts = [0] + history.epoch_ends[:-1]
    epoch_means = [np.mean(history.step_losses[a:b]) for a, b in zip(starts, history.epoch_ends)]
    loss_ax.plot(history.epoch_ends, epoch_means, "o-", markersize=3, label="epoch mean")
    loss_ax.set_yscale("log")
    loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    loss_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    loss_ax.yaxis.set_minor_formatter(NullFormatter())
    loss_ax.set_xlabel("training step")
    loss_ax.set_ylabel("sigmoid loss")
    loss_ax.set_title(f"training loss ({backend})")
    loss_ax.legend()
    epochs = np.arange(1, len(history.temperature) + 1)
    param_ax.plot(epochs, history.temperature, "o-", markersize=3, label="t = exp(logit_scale)")
    param_ax.plot(epochs, history.bias, "s-", markersize=3, label="b = logit_bias")
    param_ax.axhline(0.0, color="gray", linewidth=0.5)
    param_ax.set_xlabel("epoch")
    param_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    param_ax.set_title("learned temperature and bias")
    param_ax.legend()
    fig.savefig(path, dpi=110)
