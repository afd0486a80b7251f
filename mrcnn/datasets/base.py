"""Shared machinery of the vector-annotation adapters (VIA, labelme): shapes per image, drawn on demand.

Each image's ``image_info`` entry holds ``path``, ``height``, ``width`` and ``instances``: a list of
``{"class_id": <the source's class id>, "shapes": [shape, ...]}``. The shapes of one instance are painted
into one mask (their union). Shape dicts, in pixel coordinates (pixel centres at integers):

* ``{"type": "polygon", "ys": [...], "xs": [...]}``
* ``{"type": "rectangle", "y1": .., "x1": .., "y2": .., "x2": ..}`` (rows [y1, y2), columns [x1, x2))
* ``{"type": "ellipse", "cy": .., "cx": .., "ry": .., "rx": .., "theta": ..}`` (theta in radians)
* ``{"type": "bitmap", "y": .., "x": .., "png_base64": ..}``: a base64 PNG whose nonzero pixels are set,
  its top-left pixel at row y, column x (labelme 5 "mask" shapes)
"""

import logging
import os

import numpy as np

from mrcnn import utils
from mrcnn.datasets import raster

logger = logging.getLogger(__name__)


def image_size(path):
    """(height, width) of an image file, read from its header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path!r}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image file {path!r}: {e}") from e
    return height, width


def check_files_exist(paths, what, annotation_file):
    """Raise FileNotFoundError listing the first missing files of ``paths`` (images an annotation names)."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(repr(p) for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{len(missing)} {what} referenced by {annotation_file!r} not found: {shown}{more}. "
            "Pass the folder that holds the images as image_dir=..."
        )


def _paint_bitmap(mask, shape):
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(shape["png_base64"]))) as image:
        bitmap = np.asarray(image)
    if bitmap.ndim == 3:
        bitmap = bitmap.any(axis=-1)
    bitmap = bitmap.astype(bool)
    y, x = int(round(shape["y"])), int(round(shape["x"]))
    height, width = mask.shape[:2]
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + bitmap.shape[0], height), min(x + bitmap.shape[1], width)
    if top < bottom and left < right:
        mask[top:bottom, left:right] |= bitmap[top - y : bottom - y, left - x : right - x]


def paint_shape(mask, shape):
    """Paint one shape dict (see the module docstring) into the bool [H, W] ``mask`` in place."""
    kind = shape["type"]
    if kind == "polygon":
        raster.paint_polygon(mask, shape["ys"], shape["xs"])
    elif kind == "rectangle":
        raster.paint_rectangle(mask, shape["y1"], shape["x1"], shape["y2"], shape["x2"])
    elif kind == "ellipse":
        raster.paint_ellipse(
            mask, shape["cy"], shape["cx"], shape["ry"], shape["rx"], shape.get("theta", 0.0)
        )
    elif kind == "bitmap":
        _paint_bitmap(mask, shape)
    else:
        raise ValueError(f"unknown shape type {kind!r}; expected polygon, rectangle, ellipse or bitmap")
    return mask


class ShapeAnnotationDataset(utils.Dataset):
    """A ``Dataset`` whose masks are drawn from the polygons, rectangles and ellipses in ``image_info``."""

    def load_mask(self, image_id):
        """Instance masks of an image: (bool [H, W, N], int32 class ids [N]).

        Shapes are clipped to the image; instances left with no pixel (e.g. entirely outside the image
        or thinner than a pixel centre) are dropped. No instances gives bool [H, W, 0] and int32 [0].
        """
        info = self._check_image_id(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for instance in info["instances"]:
            mask = np.zeros((height, width), dtype=bool)
            for shape in instance["shapes"]:
                paint_shape(mask, shape)
            if not mask.any():
                logger.debug(
                    "image %s: instance of class %s is empty after clipping, dropped",
                    info["path"],
                    instance["class_id"],
                )
                continue
            masks.append(mask)
            class_ids.append(self.map_source_class_id(f"{info['source']}.{instance['class_id']}"))
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.array(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        """The image's file path."""
        return self._check_image_id(image_id)["path"]
