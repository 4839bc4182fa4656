"""Reading images as transformers reads them, so that both give the same pixels.

A file gets its EXIF orientation applied and is converted to RGB (transformers' `load_image`,
which the zero-shot pipeline calls: alpha is dropped); a PIL image passed as an object has its
alpha composited onto white (the image processors' `convert_to_rgb`). Arrays pass through.
"""

from pathlib import Path

import numpy as np

from keras_siglip.extras import require


class ImageReadError(ValueError):
    """An image file that cannot be read; the message names the file and its position."""


def is_pil(item):
    """Whether `item` is a PIL image (checked without importing PIL)."""
    return hasattr(item, "getbands") and hasattr(item, "convert") and hasattr(item, "size")


def load_image(item, index=0):
    """A file path, a PIL image or an array to an `(H, W, 3)` array (uint8 for files and PIL).

    Args:
        item: a path (str or `Path`), a PIL image, or an array (returned as it is).
        index: the item's position among the inputs, for the error message.

    Raises:
        ImageReadError: the file is missing, a folder, or not a readable image.
    """
    if isinstance(item, (str, Path)):
        require("images", "Reading image files")
        from PIL import Image, ImageOps

        path = Path(item)
        if not path.is_file():
            problem = "is a folder, not an image file" if path.is_dir() else "does not exist"
            raise ImageReadError(f"image {index} ({item}) {problem}.")
        try:
            with Image.open(path) as image:
                return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
            # Pillow reports damaged files as OSError, SyntaxError or EOFError by format.
            raise ImageReadError(
                f"image {index} ({item}) cannot be read as an image: {error}"
            ) from error
    if is_pil(item):
        from PIL import Image

        if "A" in item.getbands() or item.info.get("transparency") is not None:
            rgba = item.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
        return np.asarray(item.convert("RGB"))
    return np.asarray(item)
