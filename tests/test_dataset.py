"""Tests for mrcnn.utils.Dataset: registration, prepare() id maps, image loading, errors."""

import logging
import os

import numpy as np
import pytest
from PIL import Image
from shared_paths import DATA_DIR

from mrcnn import utils
from mrcnn.datasets.base import DatasetNotPreparedError

BALLOON = str(DATA_DIR / "balloon")


class ShapesLike(utils.Dataset):
    """Two sources, a duplicate class and a comma name, three images."""

    def populate(self, paths=("a.png", "b.png", "c.png")):
        self.add_class("shapes", 1, "square")
        self.add_class("shapes", 2, "circle, round")
        self.add_class("shapes", 1, "square again")  # duplicate: ignored
        self.add_class("coco", 12, "stop sign,sign")
        self.add_image("shapes", "img-a", paths[0], width=4, height=3)
        self.add_image("shapes", "img-b", paths[1])
        self.add_image("coco", 77, paths[2])


def test_prepare_builds_maps():
    ds = ShapesLike()
    ds.populate()
    assert ds.class_info[0] == {"source": "", "id": 0, "name": "BG"}
    assert len(ds.class_info) == 4
    ds.prepare()
    assert ds.num_classes == 4 and ds.num_images == 3
    np.testing.assert_array_equal(ds.class_ids, [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.image_ids, [0, 1, 2])
    assert ds.class_names == ["BG", "square", "circle", "stop sign"]
    assert ds.class_from_source_map == {".0": 0, "shapes.1": 1, "shapes.2": 2, "coco.12": 3}
    assert ds.image_from_source_map == {"shapes.img-a": 0, "shapes.img-b": 1, "coco.77": 2}
    assert ds.sources == ["", "coco", "shapes"]
    assert ds.source_class_ids == {"": [0], "coco": [0, 3], "shapes": [0, 1, 2]}
    assert ds.map_source_class_id("coco.12") == 3
    assert ds.get_source_class_id(3, "coco") == 12
    assert ds.get_source_class_id(2, "shapes") == 2
    assert ds.source_image_link(2) == "c.png"
    assert ds.image_info[0]["width"] == 4 and ds.image_info[0]["id"] == "img-a"
    assert ds.image_reference(1) == ""


def test_attributes_before_prepare_say_call_prepare():
    ds = ShapesLike()
    ds.populate()
    for name in ("image_ids", "num_classes", "class_names", "source_class_ids", "class_from_source_map"):
        with pytest.raises(AttributeError, match=r"call dataset\.prepare\(\)") as info:
            getattr(ds, name)
        assert name in str(info.value)
        assert isinstance(info.value, DatasetNotPreparedError)
    with pytest.raises(AttributeError, match="prepare"):
        ds.map_source_class_id("coco.12")
    assert not hasattr(ds, "num_images")
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        ds.nonexistent  # noqa: B018


def test_unknown_ids_raise_clear_errors():
    ds = ShapesLike()
    ds.populate()
    ds.prepare()
    with pytest.raises(IndexError, match=r"unknown image_id 3: this dataset has 3 images"):
        ds.load_image(3)
    with pytest.raises(IndexError, match="unknown image_id -1"):
        ds.source_image_link(-1)
    with pytest.raises(TypeError, match="image_id must be an int"):
        ds.image_reference("0")
    with pytest.raises(KeyError, match="unknown source class id 'coco.13'"):
        ds.map_source_class_id("coco.13")
    with pytest.raises(ValueError, match="belongs to source 'coco', not 'shapes'"):
        ds.get_source_class_id(3, "shapes")
    with pytest.raises(IndexError, match="unknown class_id 9"):
        ds.get_source_class_id(9, "coco")
    with pytest.raises(ValueError, match="cannot contain a dot"):
        ds.add_class("my.source", 1, "x")
    assert ds.source_image_link(np.int64(1)) == "b.png"


def test_base_load_mask_warns_and_is_empty(caplog):
    ds = ShapesLike()
    ds.populate()
    ds.prepare()
    with caplog.at_level(logging.WARNING):
        mask, class_ids = ds.load_mask(0)
    assert mask.shape == (0, 0, 0) and class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert "load_mask" in caplog.text


def _dataset_for(path):
    ds = utils.Dataset()
    ds.add_class("t", 1, "thing")
    ds.add_image("t", 0, str(path))
    ds.prepare()
    return ds


def _rgb_pattern():
    rgb = np.zeros((6, 5, 3), dtype=np.uint8)
    rgb[..., 0] = np.arange(5) * 50
    rgb[..., 1] = (np.arange(6) * 40)[:, None]
    rgb[..., 2] = 7
    return rgb


def test_load_image_rgb_and_rgba(tmp_path):
    rgb = _rgb_pattern()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 10, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        image = _dataset_for(tmp_path / name).load_image(0)
        assert image.dtype == np.uint8 and image.shape == (6, 5, 3)
        np.testing.assert_array_equal(image, rgb)  # alpha dropped, colors untouched


def test_load_image_grayscale_and_gray_alpha(tmp_path):
    gray = (np.arange(30).reshape(6, 5) * 8).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(np.stack([gray, np.full_like(gray, 3)], axis=2), mode="LA").save(tmp_path / "la.png")
    for name in ("gray.png", "la.png"):
        image = _dataset_for(tmp_path / name).load_image(0)
        assert image.dtype == np.uint8 and image.shape == (6, 5, 3)
        for c in range(3):
            np.testing.assert_array_equal(image[..., c], gray)


def test_load_image_palette(tmp_path):
    rgb = _rgb_pattern()
    palette_img = Image.fromarray(rgb).quantize(colors=256)
    assert palette_img.mode == "P"
    palette_img.save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    image = _dataset_for(tmp_path / "pal.png").load_image(0)
    assert image.dtype == np.uint8 and image.shape == (6, 5, 3)
    # 30 pixels with at most 30 distinct colors: the palette holds them exactly
    np.testing.assert_array_equal(image, rgb)


def test_load_image_16bit(tmp_path):
    values = np.array([[0, 257, 65535], [32896, 1000, 65280]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    image = _dataset_for(tmp_path / "g16.png").load_image(0)
    assert image.dtype == np.uint8 and image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image[..., 0], [[0, 1, 255], [128, 4, 254]])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_load_image_missing_and_unreadable_files_name_the_path(tmp_path):
    missing = tmp_path / "nope" / "missing.jpg"
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        _dataset_for(missing).load_image(0)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="broken.png"):
        _dataset_for(bad).load_image(0)


@pytest.mark.skipif(not os.path.isdir(BALLOON), reason="balloon data not available")
def test_load_image_real_jpeg():
    train = os.path.join(BALLOON, "train")
    name = sorted(f for f in os.listdir(train) if f.endswith(".jpg"))[0]
    ds = _dataset_for(os.path.join(train, name))
    image = ds.load_image(0)
    with Image.open(os.path.join(train, name)) as pil_image:
        width, height = pil_image.size
    assert image.dtype == np.uint8 and image.shape == (height, width, 3)
    assert image.std() > 10  # a real photo, not a blank array
