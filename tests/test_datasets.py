"""Dataset adapters (mrcnn.datasets): hand-made files for every shape and format rule, then the real data."""

import base64
import csv
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrcnn.datasets import (
    CocoJsonDataset,
    LabelmeDataset,
    MaskFolderDataset,
    ViaDataset,
    detect_format,
    open_dataset,
    raster,
)
from tests.shared_paths import DATA_DIR

BALLOON = DATA_DIR / "balloon"
FRUITS_JSON = DATA_DIR / "fruits_nuts" / "data" / "trainval.json"
LABELME = DATA_DIR / "labelme_instance_segmentation"
DSB = DATA_DIR / "dsb2018_stage1_test_subset"
COCO_VAL100 = DATA_DIR / "faster_coco_eval_tests/tests/dataset/cocoapi/instances_val2014_100.json"


def write_image(path, height, width, color=(10, 200, 30)):
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = color
    Image.fromarray(image).save(path)
    return path


def all_instances(dataset):
    """(class names of every instance, total count) over a prepared dataset."""
    names = []
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        assert masks.dtype == bool and class_ids.dtype == np.int32
        assert masks.shape[-1] == class_ids.shape[0]
        assert masks.reshape(-1, masks.shape[-1]).any(axis=0).all(), "no empty instance masks"
        names += [dataset.class_names[abs(c)] for c in class_ids]
    return names


# ---------------------------------------------------------------------------------------------- raster
def test_polygon_pixel_centres_and_clipping():
    mask = raster.polygon_mask((5, 6), [1, 1, 3, 3], [1, 4, 4, 1])
    expected = np.zeros((5, 6), bool)
    expected[1:4, 1:5] = True  # edges included
    np.testing.assert_array_equal(mask, expected)
    # A polygon covering more than the image fills it, never indexes outside it.
    assert raster.polygon_mask((5, 6), [-2, -2, 10, 10], [-3, 20, 20, -3]).all()
    # Vertices exactly on the border (x == width), as in 13 balloon polygons.
    edge = raster.polygon_mask((4, 4), [0, 0, 4, 4], [2, 4, 4, 2])
    assert edge[:, 2:].all() and not edge[:, :2].any()
    assert not raster.polygon_mask((4, 4), [10, 10, 12], [10, 12, 12]).any()
    assert not raster.polygon_mask((4, 4), [0, 3], [0, 3]).any(), "2 vertices have no area"
    with pytest.raises(ValueError, match="non-finite"):
        raster.polygon_mask((4, 4), [0, np.nan, 3], [0, 1, 3])


def test_rectangle_is_half_open_and_clipped():
    mask = raster.rectangle_mask((6, 6), 1, 2, 3, 5)
    assert mask.sum() == 2 * 3 and mask[1:3, 2:5].all()
    np.testing.assert_array_equal(raster.rectangle_mask((6, 6), 3, 5, 1, 2), mask)  # corners any order
    assert raster.rectangle_mask((6, 6), -5, -5, 2, 100).sum() == 2 * 6


def test_ellipse_rotation_follows_screen_clockwise():
    wide = raster.ellipse_mask((21, 21), 10, 10, ry=2, rx=8)
    assert wide[10, 2] and wide[10, 18] and not wide[4, 10]
    turned = raster.ellipse_mask((21, 21), 10, 10, ry=2, rx=8, theta=np.pi / 2)
    np.testing.assert_array_equal(turned, wide.T)
    # 45 degrees clockwise on screen (y down): the long axis runs from top-left to bottom-right.
    diagonal = raster.ellipse_mask((21, 21), 10, 10, ry=1, rx=8, theta=np.pi / 4)
    assert diagonal[15, 15] and diagonal[5, 5] and not diagonal[15, 5] and not diagonal[5, 15]
    circle = raster.ellipse_mask((9, 9), 4, 4, 2, 2)
    assert circle.sum() == 13  # pixel centres within distance 2 of the centre
    # Centred on the corner pixel: only the quarter with r, c >= 0 and r^2 + c^2 <= 9 is kept: 4+3+3+1.
    assert raster.ellipse_mask((9, 9), 0, 0, 3, 3).sum() == 11


# ---------------------------------------------------------------------------------------------- VIA
def via2_project(tmp_path, regions_as_list=True):
    write_image(tmp_path / "a.png", 20, 30)
    write_image(tmp_path / "b.png", 10, 10)
    regions = [
        {
            "shape_attributes": {"name": "rect", "x": 2, "y": 3, "width": 4, "height": 5},
            "region_attributes": {"kind": "cat"},
        },
        {
            "shape_attributes": {"name": "circle", "cx": 20, "cy": 10, "r": 3},
            "region_attributes": {"kind": {"dog": True, "cat": False}},
        },
        {
            "shape_attributes": {"name": "ellipse", "cx": 29, "cy": 19, "rx": 4, "ry": 2, "theta": 0},
            "region_attributes": {"kind": "dog"},
        },
        {
            "shape_attributes": {"name": "polyline", "all_points_x": [0, 5], "all_points_y": [0, 5]},
            "region_attributes": {"kind": "cat"},
        },
    ]
    polygon = {
        "shape_attributes": {"name": "polygon", "all_points_x": [0, 9, 9], "all_points_y": [0, 0, 9]},
        "region_attributes": {"kind": "cat"},
    }
    if not regions_as_list:
        regions = {str(i): r for i, r in enumerate(regions)}
    project = {
        "_via_settings": {},
        "_via_attributes": {
            "region": {"kind": {"type": "dropdown", "options": {"dog": "", "cat": ""}}},
            "file": {},
        },
        "_via_img_metadata": {
            "a.png123": {"filename": "a.png", "size": 123, "regions": regions, "file_attributes": {}},
            "b.png45": {"filename": "b.png", "size": 45, "regions": [polygon], "file_attributes": {}},
            "c.png9": {"filename": "c.png", "size": 9, "regions": [], "file_attributes": {}},
        },
    }
    path = tmp_path / "project.json"
    path.write_text(json.dumps(project))
    return path


@pytest.mark.parametrize("regions_as_list", [True, False])
def test_via_shapes_and_class_attribute(tmp_path, regions_as_list):
    ds = ViaDataset()
    ds.load_via(str(via2_project(tmp_path, regions_as_list)), class_attribute="kind")
    ds.prepare()
    assert ds.class_names == ["BG", "dog", "cat"]  # the project's option order
    assert ds.num_images == 2  # c.png has no region (and no file): skipped
    masks, class_ids = ds.load_mask(0)
    assert list(class_ids) == [2, 1, 1]  # rect cat, circle dog, clipped ellipse dog; polyline skipped
    assert masks.shape == (20, 30, 3)
    np.testing.assert_array_equal(np.argwhere(masks[:, :, 0]).min(0), [3, 2])
    assert masks[:, :, 0].sum() == 4 * 5
    assert masks[:, :, 1].sum() == 29 and masks[10, 20, 1]  # radius-3 disk
    assert masks[19, 29, 2] and masks[:, :, 2].sum() < np.pi * 4 * 2  # the ellipse's clipped quarter
    masks, class_ids = ds.load_mask(1)
    assert list(class_ids) == [2] and masks[:, :, 0].sum() == 55  # triangle with 10 pixels on each leg


def test_via_single_class_and_explicit_names(tmp_path):
    path = str(via2_project(tmp_path))
    ds = ViaDataset()
    ds.load_via(path, class_names=["thing"])
    ds.prepare()
    assert ds.class_names == ["BG", "thing"]
    assert list(ds.load_mask(0)[1]) == [1, 1, 1]
    with pytest.raises(ValueError, match="class_attribute"):
        ViaDataset().load_via(path, class_names=["a", "b"])
    with pytest.raises(ValueError, match="'cat' is not in class_names"):
        ViaDataset().load_via(path, class_attribute="kind", class_names=["dog"])
    with pytest.raises(ValueError, match="no attribute 'colour'"):
        ViaDataset().load_via(path, class_attribute="colour")


def test_via_errors(tmp_path):
    path = via2_project(tmp_path)
    (tmp_path / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        ViaDataset().load_via(str(path))
    with pytest.raises(FileNotFoundError, match="not found"):
        ViaDataset().load_via(str(tmp_path / "missing.json"))
    bad_shape = {
        "x.png1": {
            "filename": "x.png",
            "size": 1,
            "regions": [{"shape_attributes": {"name": "star"}, "region_attributes": {}}],
        }
    }
    write_image(tmp_path / "x.png", 4, 4)
    (tmp_path / "bad.json").write_text(json.dumps(bad_shape))
    with pytest.raises(ValueError, match="unsupported VIA region shape 'star'"):
        ViaDataset().load_via(str(tmp_path / "bad.json"))
    (tmp_path / "via3.json").write_text(json.dumps({"project": {}, "file": {}, "metadata": {}}))
    with pytest.raises(ValueError, match="VIA 3"):
        ViaDataset().load_via(str(tmp_path / "via3.json"))


def test_balloon_counts_and_border_polygons():
    counts = {}
    for subset in ("train", "val"):
        ds = open_dataset(BALLOON, subset)
        assert isinstance(ds, ViaDataset)
        counts[subset] = (ds.num_images, sum(len(info["instances"]) for info in ds.image_info))
    assert counts == {"train": (61, 255), "val": (13, 50)}
    # Polygons with vertices on the border (Matterport's loader raises IndexError on these): they load,
    # and their masks reach the last row or column.
    ds = open_dataset(BALLOON, "train")
    touching = []
    for image_id, info in enumerate(ds.image_info):
        for k, inst in enumerate(info["instances"]):
            shape = inst["shapes"][0]
            if max(shape["xs"]) >= info["width"] or max(shape["ys"]) >= info["height"]:
                touching.append((image_id, k))
    # 13 polygons as SOURCE.md says; they lie in 7 images (SOURCE.md's "8 images" is off by one).
    assert len(touching) == 13 and len({i for i, _ in touching}) == 7
    for image_id in sorted({i for i, _ in touching})[:3]:
        masks, class_ids = ds.load_mask(image_id)
        assert masks.shape[-1] == len(ds.image_info[image_id]["instances"]) and set(class_ids) == {1}
        ks = [k for i, k in touching if i == image_id]
        assert any(masks[-1, :, k].any() or masks[:, -1, k].any() for k in ks)


def test_balloon_val_masks():
    ds = open_dataset(BALLOON, "val", class_names=["balloon"])
    assert ds.class_names == ["BG", "balloon"]
    assert Counter(all_instances(ds)) == {"balloon": 50}


# ---------------------------------------------------------------------------------------------- COCO
def coco_file(tmp_path, rle_counts):
    from pycocotools import mask as mask_utils

    write_image(tmp_path / "0.jpg", 8, 10)
    write_image(tmp_path / "1.jpg", 8, 10)
    block = np.zeros((8, 10), np.uint8, order="F")
    block[2:5, 3:7] = 1
    compressed = mask_utils.encode(block)
    compressed["counts"] = compressed["counts"].decode()
    data = {
        "images": [
            {"id": 5, "file_name": "0.jpg", "height": 8, "width": 10},
            {"id": 6, "file_name": "1.jpg", "height": 8, "width": 10},
        ],
        "categories": [{"id": 0, "name": "_background_"}, {"id": 3, "name": "cup"}, {"id": 7, "name": "pen"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": [[-4, -4, 20, -4, 20, 3, -4, 3]],
            },
            {"id": 2, "image_id": 5, "category_id": 7, "iscrowd": 0, "segmentation": compressed},
            {
                "id": 3,
                "image_id": 5,
                "category_id": 7,
                "iscrowd": 1,
                "segmentation": {"size": [8, 10], "counts": rle_counts},
            },
            {"id": 4, "image_id": 6, "category_id": 3, "iscrowd": 0, "segmentation": [[1, 1, 5, 5]]},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, block.astype(bool)


def test_coco_polygon_rle_and_crowd(tmp_path):
    path, block = coco_file(tmp_path, rle_counts=[10, 5, 65])  # column-major: rows 2..6 of column 1
    ds = CocoJsonDataset()
    ds.load_coco_json(str(path))
    ds.prepare()
    assert ds.class_names == ["BG", "cup", "pen"]  # unused _background_ category dropped
    masks, class_ids = ds.load_mask(0)
    pen = ds.map_source_class_id("coco.7")
    assert list(class_ids) == [ds.map_source_class_id("coco.3"), pen, -pen]
    # Polygon y in [-4, 3] clipped; pycocotools' COCO convention (pixel centres at +0.5) keeps rows 0..2.
    assert masks[:3, :, 0].all() and not masks[3:, :, 0].any()
    np.testing.assert_array_equal(masks[:, :, 1], block)
    expected = np.zeros((8, 10), bool)
    expected[2:7, 1] = True
    np.testing.assert_array_equal(masks[:, :, 2], expected)
    masks, class_ids = ds.load_mask(1)  # its only polygon has 2 points: no instance
    assert masks.shape == (8, 10, 0) and class_ids.shape == (0,)
    only_pens = CocoJsonDataset()
    only_pens.load_coco_json(str(path), class_ids=[7])
    only_pens.prepare()
    assert only_pens.num_images == 1 and only_pens.class_names == ["BG", "pen"]


def test_coco_errors(tmp_path):
    path, _ = coco_file(tmp_path, rle_counts=[80])
    with pytest.raises(ValueError, match=r"class_ids \[9\]"):
        CocoJsonDataset().load_coco_json(str(path), class_ids=[9])
    (tmp_path / "1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1.jpg"):
        CocoJsonDataset().load_coco_json(str(path))
    elsewhere = tmp_path / "deep" / "er"
    elsewhere.mkdir(parents=True)
    (elsewhere / "ann.json").write_text(path.read_text())
    with pytest.raises(FileNotFoundError, match="cannot find image '0.jpg'"):
        CocoJsonDataset().load_coco_json(str(elsewhere / "ann.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a COCO instances json"):
        CocoJsonDataset().load_coco_json(str(tmp_path / "list.json"))


def test_fruits_nuts_counts():
    ds = open_dataset(FRUITS_JSON)
    assert isinstance(ds, CocoJsonDataset) and ds.num_images == 18
    assert Counter(all_instances(ds)) == {"date": 71, "fig": 41, "hazelnut": 53}


def test_coco_val2014_subset_uncompressed_crowd_rle():
    ds = CocoJsonDataset()
    coco = ds.load_coco_json(str(COCO_VAL100), check_images=False, return_coco=True)
    ds.prepare()
    assert ds.num_images == 100 and ds.num_classes == 81
    crowd = [i for i, info in enumerate(ds.image_info) if any(a["iscrowd"] for a in info["annotations"])]
    negatives = 0
    for image_id in crowd:
        masks, class_ids = ds.load_mask(image_id)
        negatives += int((class_ids < 0).sum())
        info = ds.image_info[image_id]
        for k, ann in enumerate(a for a in info["annotations"] if a["iscrowd"]):
            np.testing.assert_array_equal(masks[:, :, class_ids < 0][:, :, k], coco.annToMask(ann) > 0)
    assert negatives == 9


# ---------------------------------------------------------------------------------------------- labelme
def test_labelme_real_groups_and_ignore():
    ds = open_dataset(LABELME / "data_annotated")
    assert isinstance(ds, LabelmeDataset) and ds.num_images == 3
    assert Counter(all_instances(ds)) == {"person": 6, "bus": 2, "bottle": 1, "car": 1, "chair": 1, "sofa": 1}
    # labels.txt (with __ignore__ and _background_ dropped) gives the VOC ids labelme2coco uses.
    named = open_dataset(LABELME / "data_annotated", class_names=LABELME / "labels.txt")
    assert named.num_classes == 21 and named.class_names[15] == "person"
    # The same instances, converted by labelme2coco and rasterized by pycocotools, overlap ours closely.
    reference = open_dataset(LABELME / "data_dataset_coco")
    by_file = {Path(info["path"]).name: i for i, info in enumerate(reference.image_info)}
    for image_id in ds.image_ids:
        ours, our_ids = ds.load_mask(image_id)
        theirs, their_ids = reference.load_mask(by_file[Path(ds.image_info[image_id]["path"]).name])
        assert sorted(ds.class_names[c] for c in our_ids) == sorted(
            reference.class_names[c] for c in their_ids
        )
        for k in range(ours.shape[-1]):
            iou = (ours[..., k : k + 1] & theirs).sum((0, 1)) / (ours[..., k : k + 1] | theirs).sum((0, 1))
            assert iou.max() > 0.9


def test_labelme_shapes_embedded_image_and_errors(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((12, 16, 3), 77, np.uint8)).save(buffer, format="PNG")
    bitmap = io.BytesIO()
    Image.fromarray(np.array([[1, 0], [1, 1]], np.uint8) * 255).save(bitmap, format="PNG")
    shapes = [
        {"label": "box", "points": [[9, 8], [3, 2]], "shape_type": "rectangle", "group_id": None},
        {"label": "ball", "points": [[8, 6], [8, 8]], "shape_type": "circle", "group_id": 1},
        {
            "label": "ball",
            "points": [[14, 0], [15, 1]],
            "shape_type": "mask",
            "group_id": 1,
            "mask": base64.b64encode(bitmap.getvalue()).decode(),
        },
        {"label": "ball", "points": [[0, 0], [4, 4]], "shape_type": "line", "group_id": None},
        {"label": "__ignore__", "points": [[0, 0], [5, 0], [5, 5]], "shape_type": "polygon"},
    ]
    doc = {
        "version": "5.0",
        "shapes": shapes,
        "imagePath": "gone.png",
        "imageHeight": 12,
        "imageWidth": 16,
        "imageData": base64.b64encode(buffer.getvalue()).decode(),
    }
    (tmp_path / "one.json").write_text(json.dumps(doc))
    ds = LabelmeDataset()
    ds.load_labelme(str(tmp_path))
    ds.prepare()
    assert ds.class_names == ["BG", "ball", "box"]
    image = ds.load_image(0)
    assert image.shape == (12, 16, 3) and (image == 77).all()
    masks, class_ids = ds.load_mask(0)
    assert list(class_ids) == [2, 1]
    assert masks[:, :, 0].sum() == 6 * 6 and masks[2:8, 3:9, 0].all()
    ball = masks[:, :, 1]
    assert ball[6, 8] and ball[0, 14] and ball[1, 15] and not ball[0, 15]  # disk + bitmap merged (group 1)
    assert ball.sum() == 13 + 3
    with pytest.raises(ValueError, match=r"\('box'\): label is not in class_names"):
        LabelmeDataset().load_labelme(str(tmp_path / "one.json"), class_names=["ball"])
    doc["imageData"] = None
    (tmp_path / "one.json").write_text(json.dumps(doc))
    with pytest.raises(FileNotFoundError, match="gone.png"):
        LabelmeDataset().load_labelme(str(tmp_path))
    doc["shapes"] = [{"label": "x", "points": [[0, 0]], "shape_type": "cuboid"}]
    doc["imagePath"] = "img.png"
    write_image(tmp_path / "img.png", 12, 16)
    (tmp_path / "one.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="unsupported labelme shape_type 'cuboid'"):
        LabelmeDataset().load_labelme(str(tmp_path))


# ---------------------------------------------------------------------------------------------- mask folder
def decode_solution_rle(text, height, width):
    """Kaggle RLE (column-major, 1-based starts) to bool [H, W]; independent of the nucleus sample."""
    flat = np.zeros(height * width, bool)
    numbers = [int(v) for v in text.split()]
    for start, length in zip(numbers[0::2], numbers[1::2]):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(width, height).T


def test_dsb_masks_match_solution_csv():
    ds = open_dataset(DSB, "stage1_test")
    assert isinstance(ds, MaskFolderDataset) and ds.num_images == 18
    with open(DSB / "stage1_solution.csv") as f:
        solution = {}
        for row in csv.DictReader(f):
            solution.setdefault(row["ImageId"], []).append(row)
    total = 0
    for image_id in ds.image_ids:
        masks, class_ids = ds.load_mask(image_id)
        assert set(class_ids) == {1}
        rows = solution[ds.image_info[image_id]["id"]]
        expected = {
            np.packbits(decode_solution_rle(r["EncodedPixels"], int(r["Height"]), int(r["Width"]))).tobytes()
            for r in rows
        }
        ours = {np.packbits(masks[:, :, k]).tobytes() for k in range(masks.shape[-1])}
        assert ours == expected and masks.shape[-1] == len(rows)
        total += masks.shape[-1]
    assert total == 1286


def test_mask_folder_options_and_errors(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "images").mkdir(parents=True)
        write_image(tmp_path / name / "images" / f"{name}.png", 6, 7)
    (tmp_path / "a" / "masks").mkdir()
    mask = np.zeros((6, 7), np.uint8)
    mask[1:3, 2:4] = 255
    Image.fromarray(mask).save(tmp_path / "a" / "masks" / "m1.png")
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(tmp_path / "a" / "masks" / "empty.png")
    ds = open_dataset(tmp_path, class_name="cell")
    assert ds.class_names == ["BG", "cell"] and ds.num_images == 2
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (6, 7, 1) and masks.sum() == 4 and list(class_ids) == [1]
    assert ds.load_mask(1)[0].shape == (6, 7, 0)  # no masks/ folder: a test image
    only_b = MaskFolderDataset()
    only_b.load_mask_folder(str(tmp_path), exclude_ids=["a"])
    assert [i["id"] for i in only_b.image_info] == ["b"]
    with pytest.raises(FileNotFoundError, match="'z'"):
        MaskFolderDataset().load_mask_folder(str(tmp_path), image_ids=["z"])
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "a" / "masks" / "wrong.png")
    with pytest.raises(ValueError, match="5x7 but its image is 6x7"):
        ds.load_mask(0)


# ---------------------------------------------------------------------------------------------- factory
def test_detect_format_and_errors(tmp_path):
    assert detect_format(BALLOON, "val")[0] == "via"
    assert detect_format(BALLOON / "val" / "via_region_data.json")[0] == "via"
    assert detect_format(FRUITS_JSON) == ("coco", str(FRUITS_JSON))
    assert detect_format(DATA_DIR / "fruits_nuts", "data")[0] == "coco"
    assert detect_format(LABELME / "data_annotated")[0] == "labelme"
    assert detect_format(LABELME / "data_annotated" / "2011_000003.json")[0] == "labelme"
    assert detect_format(DSB / "stage1_test")[0] == "mask_folder"
    with pytest.raises(FileNotFoundError, match="not found"):
        open_dataset(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="subset 'test' not found"):
        open_dataset(BALLOON, "test")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="unknown annotation format"):
        open_dataset(tmp_path / "other.json")
    with pytest.raises(ValueError, match="unknown dataset format"):
        open_dataset(tmp_path)
    (tmp_path / "a.json").write_text((BALLOON / "val" / "via_region_data.json").read_text())
    (tmp_path / "b.json").write_text(FRUITS_JSON.read_text())
    with pytest.raises(ValueError, match="several annotation files"):
        open_dataset(tmp_path)
    with pytest.raises(ValueError, match="unknown format 'yolo'"):
        open_dataset(tmp_path, format="yolo")


def test_coco_layout_with_subsets(tmp_path):
    """dataset/annotations/instances_<subset>.json with images in dataset/<subset>/, as COCO ships."""
    path, _ = coco_file(tmp_path, rle_counts=[80])
    (tmp_path / "annotations").mkdir()
    for subset in ("val2017", "valfoo2017"):
        (tmp_path / subset).mkdir()
        for name in ("0.jpg", "1.jpg"):
            (tmp_path / subset / name).write_bytes((tmp_path / name).read_bytes())
        (tmp_path / "annotations" / f"instances_{subset}.json").write_text(path.read_text())
    for name in ("0.jpg", "1.jpg", "ann.json"):
        (tmp_path / name).unlink()
    ds = open_dataset(tmp_path, "val2017")
    assert isinstance(ds, CocoJsonDataset) and ds.num_images == 2
    assert Path(ds.image_info[0]["path"]).parent == tmp_path / "val2017"
    with pytest.raises(ValueError, match="ambiguous"):
        open_dataset(tmp_path, "val")


def test_datasets_package_does_not_import_tensorflow():
    code = "import sys, mrcnn.datasets; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize(
    "path, subset", [(FRUITS_JSON, None), (BALLOON, "val")], ids=["fruits_nuts", "balloon"]
)
def test_ground_truth_as_detections_scores_ap_1(path, subset):
    from mrcnn import utils
    from mrcnn.evaluate import coco_metrics, dataset_to_coco, detections_to_coco

    ds = open_dataset(path, subset)
    ground_truth = dataset_to_coco(ds)
    results = []
    for image_id in ds.image_ids:
        masks, class_ids = ds.load_mask(image_id)
        results += detections_to_coco(
            image_id, utils.extract_bboxes(masks), class_ids, np.ones(len(class_ids)), masks
        )
    assert len(results) == (50 if subset == "val" else 165)
    for iou_type in ("segm", "bbox"):
        metrics = coco_metrics(ground_truth, results, iou_type)
        assert metrics["AP"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)
        assert all(ap == pytest.approx(1.0) for ap in metrics["per_class_ap"].values())
