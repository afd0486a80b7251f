"""Tests for mrcnn.data: metas, ground truth loading, RPN / head targets, generator and PyDataset."""

import logging
import random
import sys
import types

import keras
import numpy as np
import pytest

from mrcnn import augment, data, data_targets, utils
from mrcnn.config import Config
from samples.shapes.shapes import ShapesConfig, ShapesDataset

NUM_ANCHORS_128 = 3 * (32**2 + 16**2 + 8**2 + 4**2 + 2**2)


class SmallConfig(ShapesConfig):
    IMAGES_PER_GPU = 2


def _shapes(count=8, seed=0, cls=ShapesDataset, size=128):
    dataset = cls()
    dataset.load_shapes(count, size, size, seed=seed)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="module")
def config():
    return SmallConfig()


@pytest.fixture(scope="module")
def shapes():
    return _shapes()


############################################################
#  Metas and molding
############################################################


def test_compose_parse_round_trip():
    metas = np.stack(
        [
            data.compose_image_meta(
                7, (480, 640, 3), (1024, 1024, 3), (128, 0, 896, 1024), 1.6, [1, 1, 0, 1]
            ),
            data.compose_image_meta(2, (64, 32, 3), (128, 128, 3), (0, 32, 128, 96), 2.0, [1, 0, 1, 0]),
        ]
    )
    assert metas.shape == (2, 12 + 4) and metas.dtype == np.float64
    assert metas[0].tolist() == [7, 480, 640, 3, 1024, 1024, 3, 128, 0, 896, 1024, 1.6, 1, 1, 0, 1]
    parsed = data.parse_image_meta(metas)
    assert parsed["image_id"].tolist() == [7, 2] and parsed["image_id"].dtype == np.int32
    assert parsed["original_image_shape"].tolist() == [[480, 640, 3], [64, 32, 3]]
    assert parsed["image_shape"].tolist() == [[1024, 1024, 3], [128, 128, 3]]
    assert parsed["window"].tolist() == [[128, 0, 896, 1024], [0, 32, 128, 96]]
    assert parsed["window"].dtype == np.int32
    np.testing.assert_allclose(parsed["scale"], [1.6, 2.0])
    assert parsed["scale"].dtype == np.float32
    assert parsed["active_class_ids"].tolist() == [[1, 1, 0, 1], [1, 0, 1, 0]]
    with pytest.raises(ValueError, match="window"):
        data.compose_image_meta(0, (4, 4), (4, 4, 3), (0, 0, 4, 4), 1, [1])
    with pytest.raises(ValueError, match="np.newaxis"):
        data.parse_image_meta(metas[0])


def test_mold_unmold(config):
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    molded = data.mold_image(images, config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0, 1], [1 - 123.7, 1 - 116.8, 1 - 103.9], rtol=1e-6)
    np.testing.assert_array_equal(data.unmold_image(molded, config), images)
    clipped = data.unmold_image(np.array([[-500.0, 500.0, 0.0]]), config)
    assert clipped.tolist() == [[0, 255, 104]]


############################################################
#  load_image_gt
############################################################


def test_load_image_gt_shapes(shapes, config):
    for image_id in range(4):
        image, meta, class_ids, bbox, mask = data.load_image_gt(shapes, config, image_id, use_mini_mask=True)
        full_mask, full_ids = shapes.load_mask(image_id)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert meta.shape == (config.IMAGE_META_SIZE,)
        assert meta[:12].tolist() == [image_id, 128, 128, 3, 128, 128, 3, 0, 0, 128, 128, 1]
        assert meta[12:].tolist() == [1, 1, 1, 1]
        assert class_ids.dtype == np.int32 and class_ids.tolist() == full_ids.tolist()
        assert bbox.dtype == np.int32
        np.testing.assert_array_equal(bbox, utils.extract_bboxes(full_mask))
        assert mask.shape == tuple(config.MINI_MASK_SHAPE) + (len(class_ids),) and mask.dtype == bool
        expanded = utils.expand_mask(bbox, mask, image.shape)
        for i in range(len(class_ids)):
            iou = (expanded[..., i] & full_mask[..., i]).sum() / (expanded[..., i] | full_mask[..., i]).sum()
            assert iou > 0.8
        np.testing.assert_array_equal(image, shapes.load_image(image_id))


class RectDataset(utils.Dataset):
    """Non-square images with rectangles; per-image overrides of the masks for error cases."""

    def __init__(self, specs, size=(48, 80)):
        super().__init__()
        self.add_class("rects", 1, "rect")
        self.add_class("rects", 2, "bar")
        self.add_class("other", 1, "thing")
        for i, spec in enumerate(specs):
            self.add_image(spec.get("source", "rects"), i, None, **spec)
        self.size = size
        self.prepare()

    def load_image(self, image_id):
        image = np.full(self.size + (3,), 40, dtype=np.uint8)
        for y1, x1, y2, x2 in self.image_info[image_id].get("boxes", []):
            image[y1:y2, x1:x2] = 200
        return image

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        if "mask" in info:
            return info["mask"], info["class_ids"]
        boxes = info.get("boxes", [])
        mask = np.zeros(self.size + (len(boxes),), dtype=bool)
        for i, (y1, x1, y2, x2) in enumerate(boxes):
            mask[y1:y2, x1:x2, i] = True
        return mask, np.array(info.get("class_ids", [1] * len(boxes)), dtype=np.int32)


def test_load_image_gt_resizes_non_square_images(config):
    dataset = RectDataset([{"boxes": [(8, 10, 20, 40)], "class_ids": [2]}])
    image, meta, class_ids, bbox, mask = data.load_image_gt(dataset, config, 0)
    parsed = data.parse_image_meta(meta[np.newaxis])
    scale = 128 / 80
    assert parsed["original_image_shape"][0].tolist() == [48, 80, 3]
    assert parsed["window"][0].tolist() == [25, 0, 25 + 77, 128]  # 48 * 1.6 = 76.8 -> 77 rows, centred
    assert parsed["scale"][0] == pytest.approx(scale)
    assert mask.shape == (128, 128, 1) and class_ids.tolist() == [2]
    # The box scales with the image and sits inside the window.
    y1, x1, y2, x2 = bbox[0]
    assert abs(y1 - (25 + 8 * scale)) <= 1 and abs(y2 - (25 + 20 * scale)) <= 1
    assert abs(x1 - 10 * scale) <= 1 and abs(x2 - 40 * scale) <= 1
    assert image[mask[..., 0]].min() > 150 and image[~mask[..., 0]].max() < 100  # mask on the bright box
    assert meta[12:].tolist() == [1, 1, 1, 0]  # only the "rects" classes (and BG) are active


def test_load_image_gt_validates_load_mask(config):
    good = np.zeros((48, 80, 1), dtype=bool)
    good[5:9, 5:9] = True
    cases = [
        ({"mask": np.zeros((40, 80, 1), bool), "class_ids": np.array([1])}, "masks for a 48x80 image"),
        ({"mask": good[..., 0], "class_ids": np.array([1])}, "one channel per instance"),
        ({"mask": good, "class_ids": np.array([1, 2])}, "one class id per mask channel"),
        ({"mask": good, "class_ids": np.array([7])}, "out of range"),
        ({"mask": good, "class_ids": np.array([0])}, "0 is the background"),
    ]
    dataset = RectDataset([spec for spec, _ in cases])
    for image_id, (_, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message) as error:
            data.load_image_gt(dataset, config, image_id)
        assert f"image {image_id}" in str(error.value)


def test_load_image_gt_checks_num_classes():
    class TwoClasses(Config):
        NAME = "two"
        NUM_CLASSES = 2
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128

    dataset = RectDataset([{"boxes": [(1, 1, 9, 9)]}])
    with pytest.raises(ValueError, match="NUM_CLASSES = dataset.num_classes"):
        data.load_image_gt(dataset, TwoClasses(), 0)


def test_load_image_gt_augmentation(config):
    dataset = RectDataset([{"boxes": [(8, 10, 20, 40), (30, 50, 40, 60)], "class_ids": [1, 2]}])
    _, _, _, plain_boxes, _ = data.load_image_gt(dataset, config, 0)
    _, _, ids, boxes, mask = data.load_image_gt(dataset, config, 0, augmentation=augment.Fliplr(1.0))
    assert ids.tolist() == [1, 2]
    np.testing.assert_array_equal(boxes[:, [0, 2]], plain_boxes[:, [0, 2]])
    np.testing.assert_array_equal(boxes[:, [1, 3]], 128 - plain_boxes[:, [3, 1]])

    def erase_first(image, masks):
        masks = masks.copy()
        masks[..., 0] = False
        return image, masks

    _, _, ids, boxes, mask = data.load_image_gt(dataset, config, 0, augmentation=erase_first)
    assert ids.tolist() == [2] and mask.shape[-1] == 1 and boxes.shape == (1, 4)

    def shrink(image, masks):
        return image[:64], masks[:64]

    with pytest.raises(ValueError, match="size-preserving"):
        data.load_image_gt(dataset, config, 0, augmentation=shrink)
    with pytest.raises(TypeError, match="callable"):
        data.load_image_gt(dataset, config, 0, augmentation="fliplr")


def test_deprecated_augment_flag_flips_and_warns(config, caplog):
    dataset = RectDataset([{"boxes": [(8, 10, 20, 40)]}])
    _, _, _, plain, _ = data.load_image_gt(dataset, config, 0)
    mirrored = plain.copy()
    mirrored[:, [1, 3]] = 128 - plain[:, [3, 1]]
    seen = set()
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        for seed in range(12):
            _, _, _, boxes, _ = data.load_image_gt(
                dataset, config, 0, augment=True, rng=np.random.default_rng(seed)
            )
            assert np.array_equal(boxes, plain) or np.array_equal(boxes, mirrored)
            seen.add(np.array_equal(boxes, plain))
    assert seen == {True, False}
    assert "deprecated" in caplog.text


def test_imgaug_augmenters_touch_masks_only_through_the_hook_list(config, monkeypatch):
    """imgaug is optional; a stand-in module checks the plumbing (deterministic mode, uint8 masks, hooks)."""

    class HooksImages:
        def __init__(self, activator):
            self.activator = activator

    monkeypatch.setitem(sys.modules, "imgaug", types.SimpleNamespace(HooksImages=HooksImages))

    def augmenter(class_name):
        class Fake:
            calls = []

            def to_deterministic(self):
                return self

            def augment_image(self, image, hooks=None):
                self.calls.append(image.dtype)
                if hooks is not None and not hooks.activator(image, self, [], True):
                    return image
                return image[:, ::-1]

        Fake.__name__ = class_name
        return Fake()

    dataset = RectDataset([{"boxes": [(8, 10, 20, 40)]}])
    _, _, _, plain, _ = data.load_image_gt(dataset, config, 0)
    flip = augmenter("Fliplr")
    _, _, _, boxes, mask = data.load_image_gt(dataset, config, 0, augmentation=flip)
    assert boxes[0, 1] == 128 - plain[0, 3] and mask.dtype == bool
    assert flip.calls == [np.uint8, np.uint8]
    image, _, _, boxes, _ = data.load_image_gt(dataset, config, 0, augmentation=augmenter("Multiply"))
    np.testing.assert_array_equal(boxes, plain)  # masks untouched by a non-geometric augmenter


############################################################
#  RPN targets
############################################################


def _iou(a, b):
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = h * w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_rpn_match(anchors, gt_class_ids, gt_boxes):
    """Slow loop version of the matching rules (before subsampling): (match, best gt per anchor)."""
    crowds = [g for g in range(len(gt_boxes)) if gt_class_ids[g] < 0]
    objects = [g for g in range(len(gt_boxes)) if gt_class_ids[g] > 0]
    iou = [[_iou(anchor, gt_boxes[g]) for g in objects] for anchor in anchors]
    match, best_gt = [], []
    for a, anchor in enumerate(anchors):
        crowd_iou = max([_iou(anchor, gt_boxes[g]) for g in crowds], default=0.0)
        best = max(iou[a], default=0.0)
        best_gt.append(objects[iou[a].index(best)] if objects else -1)
        match.append(-1 if best < 0.3 and crowd_iou < 0.001 else 0)
    for j in range(len(objects)):
        column = [iou[a][j] for a in range(len(anchors))]
        top = max(column)
        for a in range(len(anchors)):
            if top > 0 and column[a] == top:
                match[a] = 1
    for a in range(len(anchors)):
        if max(iou[a], default=0.0) >= 0.7:
            match[a] = 1
    return np.array(match), np.array(best_gt)


def _grid_anchors(size=64):
    anchors = []
    for side_h, side_w in [(8, 8), (16, 16), (16, 8), (8, 16), (32, 32)]:
        for y in range(0, size - side_h + 1, 4):
            for x in range(0, size - side_w + 1, 4):
                anchors.append((y, x, y + side_h, x + side_w))
    return np.array(anchors, dtype=np.float64)


def _rpn_config(train_anchors):
    class RPNConfig(SmallConfig):
        RPN_TRAIN_ANCHORS_PER_IMAGE = train_anchors

    return RPNConfig()


def test_build_rpn_targets_matches_reference_on_random_cases():
    anchors = _grid_anchors()
    rng = np.random.default_rng(0)
    for case in range(25):
        count = int(rng.integers(1, 5))
        corners = rng.integers(0, 56, size=(count, 2)) // (4 if case % 2 else 1) * (4 if case % 2 else 1)
        sizes = rng.choice([4, 8, 12, 16, 24], size=(count, 2))
        gt_boxes = np.concatenate([corners, np.minimum(corners + sizes, 64)], axis=1)
        gt_class_ids = rng.choice([1, 2, 3, -1], size=count, p=[0.3, 0.3, 0.25, 0.15])
        expected, best_gt = _reference_rpn_match(anchors, gt_class_ids, gt_boxes)
        for train_anchors in (len(anchors) * 2, 32):
            config = _rpn_config(train_anchors)
            match, deltas = data_targets.build_rpn_targets(
                (64, 64, 3), anchors, gt_class_ids, gt_boxes, config, rng=np.random.default_rng(case)
            )
            assert match.dtype == np.int32 and match.shape == (len(anchors),)
            assert deltas.dtype == np.float64 and deltas.shape == (train_anchors, 4)
            # Subsampling only turns labels neutral; counts follow the caps.
            assert np.all(expected[match == 1] == 1) and np.all(expected[match == -1] == -1)
            positives = min((expected == 1).sum(), train_anchors // 2)
            assert (match == 1).sum() == positives
            assert (match == -1).sum() == min((expected == -1).sum(), train_anchors - positives)
            if train_anchors > len(anchors):
                np.testing.assert_array_equal(match, expected)
            # Deltas of the positives, in index order, recover each anchor's best gt box.
            index = np.flatnonzero(match == 1)
            recovered = utils.apply_box_deltas(anchors[index], deltas[: index.size] * config.RPN_BBOX_STD_DEV)
            np.testing.assert_allclose(recovered, gt_boxes[best_gt[index]], atol=1e-3)
            assert not deltas[index.size :].any()


def test_build_rpn_targets_ties_and_thresholds():
    anchors = np.array(
        [[0, 0, 16, 16], [8, 8, 24, 24], [40, 40, 56, 56], [4, 4, 20, 20], [30, 30, 38, 38]], dtype=np.float64
    )
    gt_boxes = np.array([[4, 4, 20, 20]])
    match, deltas = data_targets.build_rpn_targets(
        (64, 64, 3), anchors[[0, 1, 2]], [1], gt_boxes, _rpn_config(256)
    )
    # Both anchors tie for the box's best IoU (144 / 368 = 0.39), so both are positive; the far one negative.
    assert match.tolist() == [1, 1, -1]
    np.testing.assert_allclose(deltas[0], [0.25 / 0.1, 0.25 / 0.1, 0, 0])
    np.testing.assert_allclose(deltas[1], [-0.25 / 0.1, -0.25 / 0.1, 0, 0])
    # With an exact match, the tied-but-weaker anchors fall back to neutral (0.3 <= IoU < 0.7).
    match, _ = data_targets.build_rpn_targets((64, 64, 3), anchors, [1], gt_boxes, _rpn_config(256))
    assert match.tolist() == [0, 0, -1, 1, -1]


def test_build_rpn_targets_crowds():
    anchors = np.array([[0, 0, 10, 10], [30, 30, 40, 40], [39, 39, 60, 60], [50, 50, 60, 60]], np.float64)
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40]])
    match, deltas = data_targets.build_rpn_targets((64, 64, 3), anchors, [1, -1], gt_boxes, _rpn_config(256))
    # Anchor 1 lies inside the crowd and anchor 2 grazes it (IoU 1/840 >= 0.001): neutral, never negative.
    assert match.tolist() == [1, 0, 0, -1]
    assert not deltas[0].any() and not deltas[1:].any()
    only_crowd, _ = data_targets.build_rpn_targets((64, 64, 3), anchors, [-1], gt_boxes[1:], _rpn_config(256))
    assert only_crowd.tolist() == [-1, 0, 0, -1]


def test_build_rpn_targets_on_pyramid_anchors(shapes, config):
    anchors = data._SampleBuilder(shapes, config).anchors((128, 128))
    assert anchors.shape == (NUM_ANCHORS_128, 4)
    _, _, class_ids, boxes, _ = data.load_image_gt(shapes, config, 0)
    match, deltas = data_targets.build_rpn_targets(
        (128, 128, 3), anchors, class_ids, boxes, config, rng=np.random.default_rng(0)
    )
    positives = np.flatnonzero(match == 1)
    assert positives.size >= len(class_ids)  # every box gets at least its best anchor
    assert (match == -1).sum() == config.RPN_TRAIN_ANCHORS_PER_IMAGE - positives.size
    recovered = utils.apply_box_deltas(anchors[positives], deltas[: positives.size] * config.RPN_BBOX_STD_DEV)
    ious = utils.compute_overlaps(recovered, boxes)
    assert np.all(ious.max(axis=1) > 0.999)


############################################################
#  Random ROIs and detection targets
############################################################


def test_generate_random_rois():
    gt_boxes = np.array([[10, 10, 20, 30], [40, 50, 60, 60]])
    rois = data_targets.generate_random_rois(
        (64, 64, 3), 100, np.array([1, 2]), gt_boxes, rng=np.random.default_rng(0)
    )
    assert rois.shape == (100, 4) and rois.dtype == np.int32
    assert np.all(rois[:, 2] > rois[:, 0]) and np.all(rois[:, 3] > rois[:, 1])
    assert rois.min() >= 0 and rois[:, [0, 2]].max() <= 64 and rois[:, [1, 3]].max() <= 64
    per_box = int(0.9 * 100 / 2)
    first = rois[:per_box]  # around box 0, expanded by its own size: rows 0..30, cols 0..50
    assert first[:, [0, 2]].max() <= 30 and first[:, [1, 3]].max() <= 50
    second = rois[per_box : 2 * per_box]  # around box 1: rows 20..64, cols 40..64
    assert second[:, [0, 2]].min() >= 20 and second[:, [1, 3]].min() >= 40


def test_build_detection_targets(config):
    dataset = RectDataset([{"boxes": [(8, 10, 20, 40), (30, 50, 40, 60)], "class_ids": [1, 2]}])
    _, _, class_ids, boxes, masks = data.load_image_gt(dataset, config, 0, use_mini_mask=True)
    rois = np.concatenate(
        [
            boxes,
            boxes + 1,
            data_targets.generate_random_rois((128, 128), 60, class_ids, boxes, rng=np.random.default_rng(1)),
        ]
    )
    out_rois, out_ids, out_bbox, out_masks = data_targets.build_detection_targets(
        rois, class_ids, boxes, masks, config, rng=np.random.default_rng(2)
    )
    rois_count = config.TRAIN_ROIS_PER_IMAGE
    assert out_rois.shape == (rois_count, 4) and out_rois.dtype == np.int32
    assert out_ids.shape == (rois_count,) and out_ids.dtype == np.int32
    assert out_bbox.shape == (rois_count, 4, 4) and out_masks.shape == (rois_count, 28, 28, 4)
    foreground = np.flatnonzero(out_ids > 0)
    assert 4 <= foreground.size <= int(rois_count * config.ROI_POSITIVE_RATIO)
    np.testing.assert_array_equal(foreground, np.arange(foreground.size))  # positives first
    for i in foreground:
        c = out_ids[i]
        refined = utils.apply_box_deltas(
            out_rois[i : i + 1].astype(np.float32), out_bbox[i : i + 1, c] * config.BBOX_STD_DEV
        )
        assert utils.compute_overlaps(refined, boxes).max() > 0.999
        assert out_masks[i, :, :, c].mean() > 0.5  # the ROI covers mostly its (rectangular) instance
        other = [k for k in range(4) if k != c]
        assert not out_bbox[i, other].any() and not out_masks[i, :, :, other].any()
    assert not out_bbox[out_ids == 0].any()
    with pytest.raises(TypeError, match="bool"):
        data_targets.build_detection_targets(rois, class_ids, boxes, masks.astype(np.uint8), config)


############################################################
#  data_generator and MaskRCNNSequence
############################################################


def _check_batch(inputs, batch, config, mask_shape=(56, 56)):
    max_gt = config.MAX_GT_INSTANCES
    expected = [
        ((batch, 128, 128, 3), np.float32),
        ((batch, config.IMAGE_META_SIZE), np.float32),
        ((batch, NUM_ANCHORS_128, 1), np.int32),
        ((batch, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
        ((batch, max_gt), np.int32),
        ((batch, max_gt, 4), np.int32),
        ((batch,) + mask_shape + (max_gt,), np.bool_),
    ]
    assert len(inputs) == len(expected)
    for array, (shape, dtype) in zip(inputs, expected):
        assert array.shape == shape and array.dtype == dtype
    for i in range(batch):
        n = int((inputs[4][i] > 0).sum())
        assert n >= 1 and not inputs[4][i, n:].any() and not inputs[5][i, n:].any()
        assert not inputs[6][i, :, :, n:].any() and inputs[6][i, :, :, :n].any(axis=(0, 1)).all()


def test_data_generator_batches(shapes, config):
    np.random.seed(0)
    generator = data.data_generator(shapes, config, shuffle=True, batch_size=2)
    seen = []
    for _ in range(5):
        inputs, outputs = next(generator)
        _check_batch(inputs, 2, config)
        assert outputs == []
        seen.extend(inputs[1][:, 0].astype(int).tolist())
    assert sorted(seen[:8]) == list(range(8))  # one shuffled pass covers each image once
    np.testing.assert_allclose(inputs[0][0], data.mold_image(shapes.load_image(seen[-2]), config))


def test_data_generator_random_rois_and_detection_targets(shapes, config):
    np.random.seed(1)
    generator = data.data_generator(shapes, config, batch_size=2, random_rois=50, detection_targets=True)
    inputs, outputs = next(generator)
    _check_batch(inputs[:7], 2, config)
    rois_count = config.TRAIN_ROIS_PER_IMAGE
    assert inputs[7].shape == (2, 50, 4) and inputs[7].dtype == np.int32
    assert inputs[8].shape == (2, rois_count, 4) and inputs[8].dtype == np.int32
    assert outputs[0].shape == (2, rois_count, 1) and outputs[0].dtype == np.int32
    assert outputs[1].shape == (2, rois_count, 4, 4) and outputs[1].dtype == np.float32
    assert outputs[2].shape == (2, rois_count, 28, 28, 4) and outputs[2].dtype == np.float32


def test_full_masks_without_mini_mask(shapes):
    class FullMaskConfig(SmallConfig):
        USE_MINI_MASK = False

    config = FullMaskConfig()
    inputs, _ = next(data.data_generator(shapes, config, batch_size=1))
    _check_batch(inputs, 1, config, mask_shape=(128, 128))
    n = int((inputs[4][0] > 0).sum())
    np.testing.assert_array_equal(utils.extract_bboxes(inputs[6][0, :, :, :n]), inputs[5][0, :n])


def test_max_gt_instances_subsamples(shapes):
    class OneInstance(SmallConfig):
        MAX_GT_INSTANCES = 1

    config = OneInstance()
    generator = data.data_generator(shapes, config, batch_size=2, shuffle=False)
    for _ in range(4):
        inputs, _ = next(generator)
        assert inputs[4].shape == (2, 1) and np.all(inputs[4] > 0)
        for i in range(2):
            image_id = int(inputs[1][i, 0])
            _, _, class_ids, boxes, _ = data.load_image_gt(shapes, config, image_id)
            row = [j for j in range(len(class_ids)) if np.array_equal(boxes[j], inputs[5][i, 0])]
            assert row and class_ids[row[0]] == inputs[4][i, 0]


class FlakyShapes(ShapesDataset):
    """Shapes whose ids in ``empty`` have no instances and whose ids in ``broken`` fail to load."""

    empty = ()
    broken = ()

    def load_mask(self, image_id):
        if image_id in self.broken:
            raise OSError(f"corrupt annotation file for image {image_id}")
        mask, class_ids = super().load_mask(image_id)
        if image_id in self.empty:
            return mask[:, :, :0], class_ids[:0]
        return mask, class_ids


def _flaky(empty=(), broken=(), count=8):
    cls = type("Flaky", (FlakyShapes,), {"empty": tuple(empty), "broken": tuple(broken)})
    return _shapes(count=count, cls=cls)


def test_generator_skips_empty_and_failing_images(config, caplog):
    dataset = _flaky(empty=(1, 2), broken=(5,))
    generator = data.data_generator(dataset, config, batch_size=2)
    seen = set()
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        for _ in range(8):
            inputs, _ = next(generator)
            seen.update(inputs[1][:, 0].astype(int).tolist())
    assert seen == {0, 3, 4, 6, 7}
    assert "image 5" in caplog.text and "corrupt annotation" in caplog.text


def test_generator_gives_up_after_consecutive_failures(config):
    dataset = _flaky(broken=range(8))
    with pytest.raises(RuntimeError, match="5 consecutive images failed") as error:
        next(data.data_generator(dataset, config, batch_size=2, shuffle=False))
    assert "[0, 1, 2, 3, 4]" in str(error.value) and "corrupt annotation" in str(error.value)
    assert isinstance(error.value.__cause__, OSError)
    with pytest.raises(RuntimeError, match="positive class id"):
        next(data.data_generator(_flaky(empty=range(8)), config, batch_size=2))


def test_no_augmentation_sources(shapes, config):
    def forbidden(image, masks):
        raise AssertionError("augmentation must not run on this source")

    generator = data.data_generator(
        shapes, config, batch_size=2, augmentation=forbidden, no_augmentation_sources=["shapes"]
    )
    _check_batch(next(generator)[0], 2, config)


def test_sequence_batches_are_reproducible_and_reshuffled(shapes, config):
    aug = augment.Sequential([augment.Fliplr(), augment.ScaleCrop((0.9, 1.1))])
    sequence = data.MaskRCNNSequence(
        shapes, config, augmentation=aug, steps=3, seed=7, workers=2, use_multiprocessing=False
    )
    assert len(sequence) == 3 and sequence.workers == 2 and not sequence.use_multiprocessing
    batch = sequence[1]
    assert isinstance(batch, tuple) and len(batch) == 1
    _check_batch(batch[0], 2, config)
    again = data.MaskRCNNSequence(shapes, config, augmentation=aug, steps=3, seed=7)[1]
    for a, b in zip(batch[0], again[0]):
        np.testing.assert_array_equal(a, b)
    ids = [sequence[i][0][1][:, 0].astype(int).tolist() for i in range(3)]
    assert len({i for row in ids for i in row}) == 6  # 3 batches of 2 distinct images per epoch
    sequence.on_epoch_end()
    assert [sequence[i][0][1][:, 0].astype(int).tolist() for i in range(3)] != ids
    with pytest.raises(IndexError):
        sequence[3]


def test_sequence_unshuffled_order_and_skips(config, caplog):
    dataset = _flaky(empty=(1,), broken=(2,))
    sequence = data.MaskRCNNSequence(dataset, config, shuffle=False, seed=0)
    assert len(sequence) == 4  # default: one pass over 8 images in batches of 2
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        ids = [sequence[i][0][1][:, 0].astype(int).tolist() for i in range(len(sequence))]
    assert ids == [[0, 3], [3, 4], [4, 5], [6, 7]]
    assert "image 2" in caplog.text
    with pytest.raises(RuntimeError, match="Most images of this epoch failed to load: 3 failed while the"):
        data.MaskRCNNSequence(_flaky(broken=range(8)), config, steps=1)[0]


def test_sequence_ends_each_epoch_with_one_line_counting_failed_images(config, caplog):
    """As Matterport's balloon loader on border polygons: a load_mask that raises on some images. Training
    goes on; the first error is logged with its traceback, each epoch ends with one counting line."""
    dataset = _flaky(broken=(1, 4, 6))
    sequence = data.MaskRCNNSequence(dataset, config, shuffle=False, seed=0, steps=3)
    with caplog.at_level(logging.DEBUG, logger="mrcnn.data"):
        for _ in range(2):
            for i in range(len(sequence)):
                sequence[i]
            sequence.on_epoch_end()
    warnings_logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    first, *summaries = warnings_logged
    assert first.getMessage().startswith(
        "Error loading image 1: OSError: corrupt annotation file for image 1"
    )
    assert first.exc_info is not None
    # Batches of 2 from positions 0, 2, 4 (unshuffled) walk past images 1, 4 and 6: three failures.
    assert [r.getMessage() for r in summaries] == [
        "Skipped 3 images this epoch because loading raised (the epoch used 6 images); first error: "
        "image 1: OSError: corrupt annotation file for image 1"
    ] * 2
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "image 4" in r.getMessage()]
    assert len(debug) == 2  # later failures only at debug level


def test_sequence_stops_when_most_of_an_epoch_fails(config):
    dataset = _flaky(broken=(0, 1, 3, 4, 6, 7))  # never 5 in a row: only the epoch rule can stop it
    sequence = data.MaskRCNNSequence(dataset, config, shuffle=False, seed=0, steps=4)
    with pytest.raises(
        RuntimeError,
        match=r"Most images of this epoch failed to load: 9 failed while the "
        r"epoch needs 8\. First error: image 0: OSError: corrupt annotation",
    ):
        for i in range(len(sequence)):
            sequence[i]


def test_sequence_feeds_keras(shapes, config):
    """Keras consumes the batches (list and dict inputs) through its PyDataset adapter."""
    shapes_by_name = {
        "input_image": ((128, 128, 3), "float32"),
        "input_image_meta": ((16,), "float32"),
        "input_rpn_match": ((None, 1), "int32"),
        "input_rpn_bbox": ((None, 4), "float32"),
        "input_gt_class_ids": ((None,), "int32"),
        "input_gt_boxes": ((None, 4), "int32"),
        "input_gt_masks": ((56, 56, None), "bool"),
    }
    inputs = [keras.Input(shape=s, dtype=d, name=n) for n, (s, d) in shapes_by_name.items()]
    pooled = keras.layers.GlobalAveragePooling2D()(inputs[0])
    model = keras.Model(inputs, pooled)
    for as_dict in (False, True):
        sequence = data.MaskRCNNSequence(shapes, config, steps=2, seed=0, as_dict=as_dict, workers=2)
        first = sequence[0][0]
        if as_dict:
            assert set(first) == set(data.INPUT_NAMES)
        predicted = model.predict(sequence, verbose=0)
        assert predicted.shape == (4, 3)
        expected = first["input_image" if as_dict else 0].mean(axis=(1, 2))
        np.testing.assert_allclose(predicted[:2], expected, rtol=1e-4, atol=1e-4)
        assert sequence.epoch == 1  # Keras ended the epoch: the next one gets a new order


def test_sequence_global_random_state(shapes, config):
    """The main process' global RNGs are left alone; in a worker process each batch reseeds them."""
    sequence = data.MaskRCNNSequence(shapes, config, steps=2, seed=3)
    np.random.seed(0)
    sequence[0]
    value = np.random.random()
    np.random.seed(0)
    assert np.random.random() == value
    sequence._owner_pid = -1  # as seen from a forked worker process
    sequence[0]
    first = (random.random(), np.random.random())
    sequence[0]
    assert (random.random(), np.random.random()) == first
    sequence[1]
    assert (random.random(), np.random.random()) != first
