"""VGG Image Annotator (VIA) 1.x and 2.x json: polygon, rect, circle and ellipse regions.

Reads both layouts VIA writes: the 1.x/2.x "export annotations as json" file (a dict keyed by
filename + size) and the 2.x project file (``_via_img_metadata`` with ``_via_attributes``). Regions
may be a dict ("0", "1", ...; VIA 1.x) or a list (VIA 2.x). The class of a region is either one fixed
class or the value of a region attribute (``class_attribute``), e.g. ``{"name": "balloon"}``.

    ds = ViaDataset()
    ds.load_via("balloon/train/via_region_data.json", class_names=["balloon"])
    ds.prepare()
"""

import json
import logging
import os

from mrcnn.datasets.base import ShapeAnnotationDataset, check_files_exist, image_size

logger = logging.getLogger(__name__)

__all__ = ["ViaDataset", "read_via_metadata", "is_via"]

_AREALESS_SHAPES = ("point", "polyline")


def is_via(data):
    """True when the parsed json ``data`` looks like a VIA 1.x/2.x annotation or project file."""
    if not isinstance(data, dict):
        return False
    if "_via_img_metadata" in data:
        return True
    entries = list(data.values())
    return bool(entries) and all(isinstance(e, dict) and "filename" in e and "regions" in e for e in entries)


def read_via_metadata(json_path):
    """Parse a VIA json file: (list of image entries, the project's region attribute definitions or {}).

    Each entry has ``filename``, ``regions`` (list) and ``file_attributes``. Raises ValueError for a
    file that is not VIA 1.x/2.x json (VIA 3 projects included) and FileNotFoundError when it is missing.
    """
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"VIA annotation file not found: {json_path!r}")
    with open(json_path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_path!r} is not valid json: {e}") from e
    if isinstance(data, dict) and {"project", "file", "metadata"} <= set(data):
        raise ValueError(
            f"{json_path!r} is a VIA 3 project, which is not supported: in VIA 3 export the "
            "annotations as COCO json and load that with CocoJsonDataset, or use VIA 2."
        )
    if not is_via(data):
        raise ValueError(
            f"{json_path!r} is not a VIA 1.x/2.x json file: expected a dict of "
            "{key: {'filename', 'regions', ...}} or a VIA 2 project with '_via_img_metadata'."
        )
    attributes = {}
    if "_via_img_metadata" in data:
        attributes = (data.get("_via_attributes") or {}).get("region", {}) or {}
        data = data["_via_img_metadata"]
    entries = []
    for entry in data.values():
        regions = entry.get("regions") or []
        if isinstance(regions, dict):
            regions = list(regions.values())
        entries.append(
            {
                "filename": entry["filename"],
                "regions": regions,
                "file_attributes": entry.get("file_attributes", {}),
            }
        )
    return entries, attributes


def _region_class(region, class_attribute, where):
    """The class name a region's attribute gives (a string; checkbox dicts must have one true key)."""
    attrs = region.get("region_attributes") or {}
    if class_attribute not in attrs:
        raise ValueError(
            f"{where}: region has no attribute {class_attribute!r} (it has {sorted(attrs)}); "
            "label every region or choose another class_attribute."
        )
    value = attrs[class_attribute]
    if isinstance(value, dict):  # VIA checkbox: {"option": true, ...}
        chosen = [k for k, v in value.items() if v]
        if len(chosen) != 1:
            raise ValueError(
                f"{where}: attribute {class_attribute!r} must select exactly one class, got {value}"
            )
        value = chosen[0]
    value = str(value).strip()
    if not value:
        raise ValueError(f"{where}: attribute {class_attribute!r} is empty; label the region.")
    return value


def _region_shape(shape_attributes, where):
    """A shape dict (see mrcnn.datasets.base) for VIA shape attributes; None for point and polyline."""
    name = shape_attributes.get("name")
    try:
        if name == "polygon":
            return {
                "type": "polygon",
                "ys": shape_attributes["all_points_y"],
                "xs": shape_attributes["all_points_x"],
            }
        if name == "rect":
            x, y = shape_attributes["x"], shape_attributes["y"]
            return {
                "type": "rectangle",
                "y1": y,
                "x1": x,
                "y2": y + shape_attributes["height"],
                "x2": x + shape_attributes["width"],
            }
        if name == "circle":
            r = shape_attributes["r"]
            return {
                "type": "ellipse",
                "cy": shape_attributes["cy"],
                "cx": shape_attributes["cx"],
                "ry": r,
                "rx": r,
            }
        if name == "ellipse":
            return {
                "type": "ellipse",
                "cy": shape_attributes["cy"],
                "cx": shape_attributes["cx"],
                "ry": shape_attributes["ry"],
                "rx": shape_attributes["rx"],
                "theta": shape_attributes.get("theta", 0.0),
            }
    except KeyError as e:
        raise ValueError(f"{where}: {name} region lacks the field {e.args[0]!r}") from None
    if name in _AREALESS_SHAPES:
        return None
    raise ValueError(
        f"{where}: unsupported VIA region shape {name!r}; expected polygon, rect, circle or "
        f"ellipse ({', '.join(_AREALESS_SHAPES)} have no area and are skipped)"
    )


class ViaDataset(ShapeAnnotationDataset):
    """Instances from a VIA 1.x/2.x json file; masks are drawn on demand and clipped to the image."""

    def load_via(
        self,
        json_path,
        image_dir=None,
        class_names=None,
        class_attribute=None,
        source="via",
        skip_unannotated=True,
    ):
        """Register the images and classes of a VIA json file. Call ``prepare()`` afterwards.

        image_dir: folder of the images (default: the json file's folder).
        class_attribute: None for a single class (every region is one instance of it); otherwise the name
            of the region attribute whose value is the class name (VIA dropdown, radio, text or checkbox).
        class_names: with class_attribute, the class names in id order (1, 2, ...); regions naming another
            class raise ValueError. Default: the project's attribute options (VIA 2 project files), else
            the sorted values found. Without class_attribute, a one-name list naming the single class
            (default "object").
        skip_unannotated: leave out images with no region (as Matterport's balloon loader does).
        Point and polyline regions have no area and are skipped with a warning. Image sizes are read from
        the image headers; missing images raise FileNotFoundError.
        """
        entries, attribute_defs = read_via_metadata(json_path)
        image_dir = os.path.dirname(os.path.abspath(json_path)) if image_dir is None else image_dir
        if skip_unannotated:
            entries = [e for e in entries if e["regions"]]
        check_files_exist([os.path.join(image_dir, e["filename"]) for e in entries], "images", json_path)

        if class_attribute is None:
            names = list(class_names) if class_names is not None else ["object"]
            if len(names) != 1:
                raise ValueError(
                    f"class_names={names} lists {len(names)} classes but class_attribute is "
                    "None; name the region attribute that holds each region's class, e.g. "
                    "class_attribute='name'."
                )
        elif class_names is not None:
            names = list(class_names)
        else:
            options = (attribute_defs.get(class_attribute) or {}).get("options") or {}
            found = {
                _region_class(r, class_attribute, f"{json_path}: {e['filename']}")
                for e in entries
                for r in e["regions"]
            }
            names = [str(o) for o in options if str(o) in found] + sorted(found - {str(o) for o in options})
        if len(set(names)) != len(names):
            raise ValueError(f"class_names has duplicates: {names}")
        for class_id, name in enumerate(names, start=1):
            self.add_class(source, class_id, name)
        ids = {name: class_id for class_id, name in enumerate(names, start=1)}

        skipped = 0
        for entry in entries:
            where = f"{json_path}: {entry['filename']}"
            instances = []
            for region in entry["regions"]:
                shape = _region_shape(region.get("shape_attributes") or {}, where)
                if shape is None:
                    skipped += 1
                    continue
                if class_attribute is None:
                    class_id = 1
                else:
                    name = _region_class(region, class_attribute, where)
                    if name not in ids:
                        raise ValueError(f"{where}: region class {name!r} is not in class_names {names}")
                    class_id = ids[name]
                instances.append({"class_id": class_id, "shapes": [shape]})
            path = os.path.join(image_dir, entry["filename"])
            height, width = image_size(path)
            self.add_image(
                source, image_id=entry["filename"], path=path, width=width, height=height, instances=instances
            )
        if skipped:
            logger.warning("%s: skipped %d point/polyline regions (they have no area)", json_path, skipped)
