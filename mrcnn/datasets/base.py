"""The ``Dataset`` base class, and the shared machinery of the vector-annotation adapters (VIA, labelme).

``Dataset`` (Matterport's ``utils.Dataset``, re-exported there): subclass it, register classes and
images, call ``prepare()``. ``ShapeAnnotationDataset`` draws instance masks from shapes, on demand.

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

from mrcnn.datasets import raster

logger = logging.getLogger(__name__)


# Attributes that exist only after Dataset.prepare().
_PREPARED_ATTRS = frozenset(
    {
        "num_classes",
        "class_ids",
        "class_names",
        "num_images",
        "_image_ids",
        "image_ids",
        "class_from_source_map",
        "image_from_source_map",
        "sources",
        "source_class_ids",
    }
)


class DatasetNotPreparedError(AttributeError):
    """Raised when a Dataset attribute that ``prepare()`` sets is read before ``prepare()`` was called."""


def _to_uint8_rgb(pil_image, path):
    """Convert a PIL image of any common mode to a uint8 [H, W, 3] array."""
    mode = pil_image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grayscale (PNG/TIFF): scale 0..65535 to 0..255 with rounding.
        values = np.clip(np.asarray(pil_image).astype(np.float64), 0, 65535)
        gray = np.round(values / 257.0).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    try:
        rgb = pil_image.convert("RGB")
    except (ValueError, OSError) as e:
        raise ValueError(f"cannot convert image {path!r} (PIL mode {mode!r}) to RGB: {e}") from e
    return np.asarray(rgb, dtype=np.uint8)


class Dataset:
    """Base class for datasets: subclass it, register classes and images, then call ``prepare()``.

    Internal class ids are 0..num_classes-1 with 0 = background ("BG"); internal image ids are
    0..num_images-1. "source.id" strings (e.g. "coco.12") map a dataset's own ids to internal ids.

    Deviation from Matterport: attributes set by ``prepare()`` (num_classes, class_ids, class_names,
    num_images, image_ids, class_from_source_map, image_from_source_map, sources, source_class_ids)
    raise DatasetNotPreparedError (an AttributeError) naming ``prepare()`` when read before it, and
    methods given an unknown id raise a clear error instead of an IndexError/assert.
    """

    def __init__(self, class_map=None):
        """class_map is accepted for compatibility and ignored (as in Matterport)."""
        self.image_info = []
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]

    def __getattr__(self, name):
        if name in _PREPARED_ATTRS:
            public = name.lstrip("_")
            raise DatasetNotPreparedError(
                f"{type(self).__name__}.{public} is not available yet: call dataset.prepare() after adding "
                "classes and images."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        """Register class ``class_id`` of ``source`` (no "." in source); re-adding a pair is ignored."""
        if "." in source:
            raise ValueError(f"source name cannot contain a dot: {source!r} (it separates source and id)")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source: str, image_id, path: str, **kwargs) -> None:
        """Register an image; extra keyword arguments are stored in its ``image_info`` entry."""
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    @staticmethod
    def _check_id(kind, value, table):
        """``table[value]`` after checking that ``value`` is an int id of ``table`` ("image" or "class")."""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{kind}_id must be an int, got {type(value).__name__} {value!r}")
        if not 0 <= value < len(table):
            raise IndexError(
                f"unknown {kind}_id {value}: this dataset has {len(table)} {kind}s "
                f"(valid ids 0..{len(table) - 1})"
            )
        return table[value]

    def _check_image_id(self, image_id):
        return self._check_id("image", image_id, self.image_info)

    def _check_class_id(self, class_id):
        return self._check_id("class", class_id, self.class_info)

    def image_reference(self, image_id: int) -> str:
        """A link or description of the image for debugging; the base version returns ""."""
        self._check_image_id(image_id)
        return ""

    def prepare(self, class_map=None) -> None:
        """Build the id tables. Call after adding classes and images. class_map is ignored."""
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [info["name"].split(",")[0] for info in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": class_id for class_id, info in enumerate(self.class_info)
        }
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": image_id for image_id, info in enumerate(self.image_info)
        }
        self.sources = sorted({info["source"] for info in self.class_info})
        self.source_class_ids = {
            source: [i for i, info in enumerate(self.class_info) if i == 0 or info["source"] == source]
            for source in self.sources
        }

    def map_source_class_id(self, source_class_id: str) -> int:
        """Internal class id of a "source.id" string, e.g. "coco.12" -> 11."""
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            raise KeyError(
                f"unknown source class id {source_class_id!r}; expected 'source.id' as registered with "
                f"add_class, e.g. {next(iter(self.class_from_source_map))!r}"
            ) from None

    def get_source_class_id(self, class_id: int, source: str):
        """The source's own id of internal class ``class_id``; ValueError if it is another source's."""
        info = self._check_class_id(class_id)
        if info["source"] != source:
            raise ValueError(f"class_id {class_id} belongs to source {info['source']!r}, not {source!r}")
        return info["id"]

    @property
    def image_ids(self) -> np.ndarray:
        """int array [num_images] of internal image ids (0..num_images-1)."""
        return self._image_ids

    def source_image_link(self, image_id: int) -> str:
        """Path or URL of the image, as given to ``add_image``."""
        return self._check_image_id(image_id)["path"]

    def load_image(self, image_id: int) -> np.ndarray:
        """Load an image as uint8 RGB [H, W, 3].

        Grayscale (2-D or 1-channel), gray+alpha, RGBA (alpha dropped), palette (P mode), CMYK and 16-bit
        grayscale files (scaled 0..65535 -> 0..255) are all converted. Pixels are returned as stored
        (EXIF orientation is not applied, as in Matterport). A missing file raises FileNotFoundError and
        an unreadable one ValueError, both naming the path.
        """
        from PIL import Image, UnidentifiedImageError

        path = self.source_image_link(image_id)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found for image_id {image_id}: {path!r}")
        try:
            with Image.open(path) as pil_image:
                pil_image.load()
                return _to_uint8_rgb(pil_image, path)
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"cannot read image file {path!r} for image_id {image_id}: {e}") from e

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Instance masks of an image: (bool [H, W, N], int32 class ids [N]).

        Subclasses must override this; the base version logs a warning and returns an empty [0, 0, 0]
        mask and no class ids.
        """
        self._check_image_id(image_id)
        logging.warning(
            "Dataset.load_mask() base version called: it returns no instances. Override load_mask() in "
            "your Dataset subclass."
        )
        return np.empty([0, 0, 0]), np.empty([0], np.int32)


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


class ShapeAnnotationDataset(Dataset):
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
