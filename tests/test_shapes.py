"""Tests for the synthetic shapes dataset and its config."""

import numpy as np
import pytest

from mrcnn import utils
from mrcnn.datasets.shapes import ShapesConfig, ShapesDataset


def _dataset(count=12, size=(64, 96), seed=0):
    dataset = ShapesDataset()
    dataset.load_shapes(count, size[0], size[1], seed=seed)
    dataset.prepare()
    return dataset


def test_config_values():
    config = ShapesConfig()
    assert config.NAME == "shapes"
    assert (config.GPU_COUNT, config.IMAGES_PER_GPU, config.BATCH_SIZE) == (1, 8, 8)
    assert config.NUM_CLASSES == 4
    assert (config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == (128, 128)
    assert tuple(config.RPN_ANCHOR_SCALES) == (8, 16, 32, 64, 128)
    assert config.TRAIN_ROIS_PER_IMAGE == 32
    assert (config.STEPS_PER_EPOCH, config.VALIDATION_STEPS) == (100, 5)
    assert config.IMAGE_SHAPE.tolist() == [128, 128, 3]
    assert config.IMAGE_META_SIZE == 16


def test_classes():
    dataset = _dataset()
    assert dataset.class_names == ["BG", "square", "circle", "triangle"]
    assert dataset.num_classes == 4
    assert dataset.sources == ["", "shapes"]
    assert dataset.num_images == 12


def test_seed_makes_the_dataset_reproducible():
    a, b, c = _dataset(seed=3), _dataset(seed=3), _dataset(seed=4)
    assert [i["shapes"] for i in a.image_info] == [i["shapes"] for i in b.image_info]
    assert [i["shapes"] for i in a.image_info] != [i["shapes"] for i in c.image_info]
    for image_id in a.image_ids:
        np.testing.assert_array_equal(a.load_image(image_id), b.load_image(image_id))
        mask_a, ids_a = a.load_mask(image_id)
        mask_b, ids_b = b.load_mask(image_id)
        np.testing.assert_array_equal(mask_a, mask_b)
        np.testing.assert_array_equal(ids_a, ids_b)


def test_images_and_masks_agree():
    dataset = _dataset(count=20, size=(64, 96), seed=1)
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        image = dataset.load_image(image_id)
        mask, class_ids = dataset.load_mask(image_id)
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
        assert mask.dtype == bool and mask.shape[:2] == (64, 96) and class_ids.dtype == np.int32
        assert 1 <= mask.shape[2] == class_ids.shape[0] <= 4
        assert mask.sum(axis=2).max() <= 1  # occlusion leaves instances disjoint
        # Pixels outside every instance show the background; each instance's pixels its shape's colour.
        np.testing.assert_array_equal(
            image[~mask.any(axis=2)], np.broadcast_to(info["bg_color"], image[~mask.any(axis=2)].shape)
        )
        names = [dataset.class_names[c] for c in class_ids]
        boxes = utils.extract_bboxes(mask)
        for i in range(mask.shape[2]):
            colors = np.unique(image[mask[:, :, i]], axis=0)
            assert colors.shape[0] == 1
            matching = [s for s in info["shapes"] if s[0] == names[i] and tuple(colors[0]) == s[1]]
            assert matching, "instance colour/class does not match any shape spec"
            x, y, s = matching[0][2]
            y1, x1, y2, x2 = boxes[i]
            assert y - s - 1 <= y1 and y2 <= y + s + 1 and x1 >= x - 2 * s and x2 <= x + 2 * s + 1


def test_occluded_shapes_are_cut_and_hidden_ones_dropped():
    dataset = ShapesDataset()
    dataset.add_class("shapes", 1, "square")
    dataset.add_class("shapes", 2, "circle")
    dataset.add_class("shapes", 3, "triangle")
    shapes = [
        ("circle", (255, 0, 0), (30, 30, 5)),  # hidden under the big square
        ("triangle", (0, 255, 0), (10, 10, 6)),  # partly under the square
        ("square", (0, 0, 255), (30, 30, 14)),
    ]
    dataset.add_image("shapes", 0, None, width=64, height=64, bg_color=(9, 9, 9), shapes=shapes)
    dataset.prepare()
    mask, class_ids = dataset.load_mask(0)
    assert class_ids.tolist() == [3, 1]
    square = dataset.draw_shape(np.zeros((64, 64), bool), "square", (30, 30, 14), True)
    triangle = dataset.draw_shape(np.zeros((64, 64), bool), "triangle", (10, 10, 6), True)
    np.testing.assert_array_equal(mask[:, :, 1], square)
    np.testing.assert_array_equal(mask[:, :, 0], triangle & ~square)
    assert (triangle & square).any()


def test_draw_shape_hand_checked():
    dataset = ShapesDataset()
    square = dataset.draw_shape(np.zeros((12, 12), np.uint8), "square", (5, 6, 2), 1)
    assert square.sum() == 25 and square[4:9, 3:8].all()  # rows y-s..y+s, cols x-s..x+s
    circle = dataset.draw_shape(np.zeros((12, 12), np.uint8), "circle", (6, 6, 3), 1)
    assert circle[6, 6] and circle[6, 4] and not circle[6, 9] and not circle[2, 2]
    triangle = dataset.draw_shape(np.zeros((20, 20), np.uint8), "triangle", (10, 10, 4), 1)
    rows = np.flatnonzero(triangle.any(axis=1))
    assert (rows.min(), rows.max()) == (6, 14)  # apex at y - s, base at y + s
    assert triangle[14].sum() > triangle[7].sum()  # widens towards the base
    color_image = dataset.draw_shape(np.zeros((12, 12, 3), np.uint8), "square", (5, 5, 1), (1, 2, 3))
    assert color_image[5, 5].tolist() == [1, 2, 3]
    edge = dataset.draw_shape(np.zeros((10, 10), np.uint8), "circle", (0, 0, 4), 1)  # clipped, no error
    assert edge[0, 0] == 1
    with pytest.raises(ValueError, match="unknown shape"):
        dataset.draw_shape(np.zeros((4, 4)), "hexagon", (1, 1, 1), 1)


def test_random_image_limits_overlap():
    dataset = ShapesDataset()
    dataset.load_shapes(0, 128, 128, seed=5)
    counts = set()
    for _ in range(200):
        bg_color, shapes = dataset.random_image(128, 128)
        assert len(bg_color) == 3 and all(0 <= c <= 255 for c in bg_color)
        counts.add(len(shapes))
        boxes = np.array([[y - s, x - s, y + s, x + s] for _, _, (x, y, s) in shapes], dtype=np.float64)
        overlaps = utils.compute_overlaps(boxes, boxes)
        np.fill_diagonal(overlaps, 0)
        assert overlaps.max() <= 0.3
        for name, color, (x, y, s) in shapes:
            assert name in ("square", "circle", "triangle") and len(color) == 3
            assert 20 <= y < 108 and 20 <= x < 108 and 20 <= s <= 32
    assert counts == {1, 2, 3, 4}


def test_image_reference_and_size_check():
    dataset = _dataset(count=2)
    assert dataset.image_reference(1) == dataset.image_info[1]["shapes"]
    with pytest.raises(ValueError, match="at least 24x24"):
        ShapesDataset().load_shapes(1, 16, 64)


def test_sample_script_reexports_the_package_names():
    from mrcnn.datasets import shapes as package_shapes
    from samples.shapes import shapes as sample

    for name in (
        "ShapesConfig",
        "ShapesFastConfig",
        "ShapesInferenceConfig",
        "ShapesDataset",
        "small_backbone",
        "small_backbone_shapes",
        "make_dataset",
    ):
        assert getattr(sample, name) is getattr(package_shapes, name)
    assert package_shapes.ShapesFastConfig.BACKBONE is package_shapes.small_backbone
