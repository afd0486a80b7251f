"""labelme json (one file per image): polygon, rectangle, circle and mask shapes.

Shapes with the same label and the same non-null ``group_id`` are the parts of one instance (as in
labelme's own labelme2coco); every other shape is an instance of its own. Shapes labelled
``__ignore__`` or ``_background_`` are left out. Line, point and linestrip shapes have no area and are
skipped. When the image file named by ``imagePath`` is missing, the image embedded in ``imageData`` is used.

    ds = LabelmeDataset()
    ds.load_labelme("data_annotated/")          # every labelme json in the folder
    ds.prepare()
"""

import base64
import glob
import io
import json
import logging
import os

import numpy as np

from mrcnn.datasets.base import ShapeAnnotationDataset, image_size

logger = logging.getLogger(__name__)

__all__ = ["LabelmeDataset", "is_labelme", "IGNORED_LABELS"]

IGNORED_LABELS = ("__ignore__", "_background_")
_AREALESS_SHAPES = ("line", "point", "points", "linestrip")


def is_labelme(data):
    """True when the parsed json ``data`` looks like a labelme annotation file."""
    return isinstance(data, dict) and "shapes" in data and "imagePath" in data


def _read_labelme(json_path):
    with open(json_path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_path!r} is not valid json: {e}") from e
    if not is_labelme(data):
        raise ValueError(f"{json_path!r} is not a labelme file: expected 'shapes' and 'imagePath' keys")
    return data


def _labelme_shape(shape, where):
    """A shape dict (see mrcnn.datasets.base) for a labelme shape; None for shapes without area."""
    kind = shape.get("shape_type") or "polygon"
    points = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
    if kind == "polygon":
        return {"type": "polygon", "ys": points[:, 1].tolist(), "xs": points[:, 0].tolist()}
    if kind in ("rectangle", "circle", "mask") and len(points) != 2:
        raise ValueError(f"{where}: a {kind} shape needs 2 points, got {len(points)}")
    if kind == "rectangle":
        (x1, y1), (x2, y2) = points
        return {"type": "rectangle", "y1": y1, "x1": x1, "y2": y2, "x2": x2}
    if kind == "circle":  # centre, then a point on the circle
        (cx, cy), (px, py) = points
        r = float(np.hypot(px - cx, py - cy))
        return {"type": "ellipse", "cy": cy, "cx": cx, "ry": r, "rx": r}
    if kind == "mask":  # labelme 5: a PNG of the box between the two points
        if not shape.get("mask"):
            raise ValueError(f"{where}: mask shape without 'mask' data")
        x, y = points.min(axis=0)
        return {"type": "bitmap", "y": y, "x": x, "png_base64": shape["mask"]}
    if kind in _AREALESS_SHAPES:
        return None
    raise ValueError(
        f"{where}: unsupported labelme shape_type {kind!r}; expected polygon, rectangle, circle or mask"
    )


def _json_files(path):
    if isinstance(path, (list, tuple)):
        files = [str(p) for p in path]
    elif os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.json")))
        if not files:
            raise FileNotFoundError(f"no labelme .json files in folder {path!r}")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise FileNotFoundError(f"labelme annotation path not found: {path!r}")
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"labelme annotation file not found: {f!r}")
    return files


def _read_class_names(class_names):
    if isinstance(class_names, (str, os.PathLike)):
        with open(class_names, encoding="utf-8") as f:
            class_names = [line.strip() for line in f if line.strip()]
    return [n for n in class_names if n not in IGNORED_LABELS]


class LabelmeDataset(ShapeAnnotationDataset):
    """Instances from labelme json files; masks are drawn on demand and clipped to the image."""

    def load_labelme(self, path, class_names=None, source="labelme"):
        """Register the images and classes of labelme json files. Call ``prepare()`` afterwards.

        path: a folder (every ``*.json`` in it is read and must be a labelme file), one json file, or a
            list of json files. Images are found from each file's ``imagePath`` (relative to the json).
        class_names: the class names in id order (1, 2, ...), or the path of a labels.txt file (one name
            a line; ``__ignore__`` and ``_background_`` are dropped). Default: the sorted labels found.
            A shape whose label is not a class raises ValueError.
        """
        files = _json_files(path)
        documents = [(f, _read_labelme(f)) for f in files]
        if class_names is None:
            names = sorted({s["label"] for _, d in documents for s in d["shapes"]} - set(IGNORED_LABELS))
        else:
            names = _read_class_names(class_names)
        for class_id, name in enumerate(names, start=1):
            self.add_class(source, class_id, name)
        ids = {name: class_id for class_id, name in enumerate(names, start=1)}

        skipped = 0
        for json_path, data in documents:
            image_path = os.path.join(os.path.dirname(os.path.abspath(json_path)), data["imagePath"])
            embedded = None
            if not os.path.isfile(image_path):
                if not data.get("imageData"):
                    raise FileNotFoundError(
                        f"image {image_path!r} named by {json_path!r} not found and the "
                        "file has no embedded imageData"
                    )
                embedded = json_path
                height, width = data["imageHeight"], data["imageWidth"]
            else:
                height, width = image_size(image_path)
                expected = (data.get("imageHeight", height), data.get("imageWidth", width))
                if expected != (height, width):
                    raise ValueError(
                        f"{json_path!r} says the image is {expected[0]}x{expected[1]} (HxW) "
                        f"but {image_path!r} is {height}x{width}; was it rotated (EXIF) or "
                        "replaced?"
                    )
            groups = {}
            instances = []
            for index, shape in enumerate(data["shapes"]):
                label = shape["label"]
                if label in IGNORED_LABELS:
                    continue
                where = f"{json_path}: shape {index} ({label!r})"
                if label not in ids:
                    raise ValueError(f"{where}: label is not in class_names {names}")
                drawn = _labelme_shape(shape, where)
                if drawn is None:
                    skipped += 1
                    continue
                group_id = shape.get("group_id")
                if group_id is not None and (label, group_id) in groups:
                    groups[(label, group_id)]["shapes"].append(drawn)
                    continue
                instance = {"class_id": ids[label], "shapes": [drawn]}
                if group_id is not None:
                    groups[(label, group_id)] = instance
                instances.append(instance)
            self.add_image(
                source,
                image_id=os.path.basename(json_path),
                path=image_path,
                width=width,
                height=height,
                instances=instances,
                embedded_json=embedded,
            )
        if skipped:
            logger.warning("labelme: skipped %d line/point shapes (they have no area)", skipped)

    def load_image(self, image_id):
        """uint8 RGB [H, W, 3]: the image file, or the json's embedded imageData when the file is missing."""
        info = self._check_image_id(image_id)
        if not info.get("embedded_json"):
            return super().load_image(image_id)
        from PIL import Image

        data = _read_labelme(info["embedded_json"])
        with Image.open(io.BytesIO(base64.b64decode(data["imageData"]))) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
