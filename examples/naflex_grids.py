"""NaFlex patch grids for a tall, a wide and a square image.

SigLIP 2 NaFlex keeps each image's aspect ratio: it resizes the image to the largest grid of
p x p patches that fits a budget of `max_num_patches` (so it may upsample), then pads the
sequence to the budget. This prints the chosen grids and sequence lengths for a few budgets and
draws the resized images with their patch grids.

    python examples/naflex_grids.py [--budget 256] [--patch-size 16] [--out naflex_grids.png]

Needs scikit-learn (for its sample photos) and matplotlib.
"""

import argparse

import numpy as np

from keras_siglip.preprocessing import naflex_patchify, naflex_size


def sample_crops():
    """Tall, wide and square crops of scikit-learn's two sample photos (427 x 640 each)."""
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {
        "tall": china[:, 230:390],  # 427 x 160
        "wide": flower[160:280, :],  # 120 x 640
        "square": flower[40:340, 180:480],  # 300 x 300
    }


def unpatchify(patches, grid, patch_size):
    """The valid rows of a NaFlex patch sequence back to an `(h*p, w*p, 3)` image in [0, 1]."""
    h, w = grid
    p = patch_size
    image = patches[: h * w].reshape(h, w, p, p, 3).transpose(0, 2, 1, 3, 4).reshape(h * p, w * p, 3)
    return np.clip((image + 1.0) / 2.0, 0.0, 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=256, help="max_num_patches (default 256)")
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--out", default="naflex_grids.png")
    args = parser.parse_args()
    p = args.patch_size
    crops = sample_crops()

    budgets = sorted({64, args.budget, 1024})
    print(f"patch size {p}; grid = (rows, cols) of patches, used = rows*cols <= budget")
    print(f"{'image':<8} {'size':>9}  " + "  ".join(f"{'budget ' + str(b):>22}" for b in budgets))
    for name, image in crops.items():
        cells = []
        for budget in budgets:
            th, tw = naflex_size(image.shape[0], image.shape[1], p, budget)
            gh, gw = th // p, tw // p
            cells.append(f"{th}x{tw} {gh}x{gw}={gh * gw}")
        print(f"{name:<8} {image.shape[0]:>4}x{image.shape[1]:<4}  " + "  ".join(f"{c:>22}" for c in cells))

    inputs = naflex_patchify(list(crops.values()), p, args.budget)
    print(f"\nbatch for budget {args.budget}: patches {inputs['patches'].shape}, "
          f"spatial_shapes {inputs['spatial_shapes'].tolist()}, "
          f"sequence lengths {inputs['patch_mask'].sum(axis=1).tolist()} (padded to {args.budget})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(crops), figsize=(4.2 * len(crops), 8),
                             gridspec_kw={"height_ratios": [1, 1.2]})
    for col, (name, image) in enumerate(crops.items()):
        grid = tuple(int(v) for v in inputs["spatial_shapes"][col])
        resized = unpatchify(inputs["patches"][col], grid, p)
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(image)
        top.set_title(f"{name}: {image.shape[0]}x{image.shape[1]} px")
        bottom.imshow(resized, interpolation="nearest")
        for r in range(grid[0] + 1):
            bottom.axhline(r * p - 0.5, color="yellow", linewidth=0.6)
        for c in range(grid[1] + 1):
            bottom.axvline(c * p - 0.5, color="yellow", linewidth=0.6)
        bottom.set_title(f"resized {resized.shape[0]}x{resized.shape[1]} px\n"
                         f"{grid[0]}x{grid[1]} = {grid[0] * grid[1]} of {args.budget} patches")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"SigLIP 2 NaFlex: aspect-preserving resize to at most {args.budget} "
                 f"patches of {p}x{p} px")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
