"""Seeded fuzz run: random annotated images through load_image_gt and build_rpn_targets.

1,200 images of random sizes (tiny, very elongated, any aspect ratio), 0 to MAX_GT_INSTANCES + 4 instances
(rectangles, ellipses, single pixels, whole-image and empty masks, masks touching the borders, crowds),
under the "square", "crop" and "pad64" resize modes, with and without mini masks. Every output is checked
for shapes, dtypes, boxes inside the image window, masks / boxes / class ids staying aligned and RPN
targets that are consistent with the anchors and the boxes.

The seed is printed (``pytest -s``) and is part of every assertion message; set MRCNN_FUZZ_SEED to replay
or vary the run.
"""

import os

import numpy as np
from tiny_configs import Tiny64Config, config_with

from mrcnn import data, data_targets, utils
from mrcnn.backbone import compute_backbone_shapes

SEED = int(os.environ.get("MRCNN_FUZZ_SEED", "20261124"))
NUM_IMAGES = 1200


class FuzzConfig(Tiny64Config):
    NAME = "fuzz"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 2
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)


CONFIGS = {
    "square": FuzzConfig(),
    "crop": config_with(FuzzConfig, "FuzzCrop", IMAGE_RESIZE_MODE="crop"),
    "pad64": config_with(FuzzConfig, "FuzzPad64", IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64),
}


def _random_size(rng):
    kind = rng.choice(["plain", "tiny", "elongated", "aspect"], p=[0.4, 0.15, 0.2, 0.25])
    if kind == "plain":
        return int(rng.integers(8, 161)), int(rng.integers(8, 161))
    if kind == "tiny":
        return int(rng.integers(1, 7)), int(rng.integers(1, 7))
    if kind == "elongated":
        short, long = int(rng.integers(1, 9)), int(rng.integers(100, 601))
        return (short, long) if rng.random() < 0.5 else (long, short)
    height = int(rng.integers(16, 301))
    width = max(1, int(round(height * np.exp(rng.uniform(np.log(1 / 8), np.log(8))))))
    return height, width


def _random_instance(rng, height, width):
    """One bool [H, W] mask: rectangle, ellipse, pixel, whole image or empty; edges may touch the border."""
    kind = str(rng.choice(["rect", "ellipse", "pixel", "full", "empty"], p=[0.45, 0.3, 0.1, 0.08, 0.07]))
    mask = np.zeros((height, width), bool)
    if kind == "full":
        mask[:] = True
    elif kind == "pixel":
        mask[rng.integers(height), rng.integers(width)] = True
    elif kind in ("rect", "ellipse"):
        y1, y2 = np.sort(rng.integers(0, height + 1, 2))
        x1, x2 = np.sort(rng.integers(0, width + 1, 2))
        if rng.random() < 0.3:  # snap to the borders
            y1, x1 = 0, 0 if rng.random() < 0.5 else x1
            y2, x2 = height, x2 if rng.random() < 0.5 else width
        y2, x2 = max(y2, y1 + 1), max(x2, x1 + 1)
        if kind == "rect":
            mask[y1:y2, x1:x2] = True
        else:
            yy, xx = np.ogrid[:height, :width]
            cy, cx = (y1 + y2 - 1) / 2, (x1 + x2 - 1) / 2
            ry, rx = max((y2 - y1) / 2, 0.5), max((x2 - x1) / 2, 0.5)
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask, kind


class FuzzDataset(utils.Dataset):
    """Images and instance masks drawn from a seeded generator; the draw of each image is stored."""

    def __init__(self, seed, count, max_instances):
        super().__init__()
        for class_id in (1, 2, 3):
            self.add_class("fuzz", class_id, f"class{class_id}")
        rng = np.random.default_rng(seed)
        for image_id in range(count):
            height, width = _random_size(rng)
            count_instances = 0 if rng.random() < 0.1 else int(rng.integers(1, max_instances + 5))
            masks, kinds = (
                zip(*[_random_instance(rng, height, width) for _ in range(count_instances)])
                if count_instances
                else ((), ())
            )
            class_ids = rng.integers(1, 4, count_instances)
            class_ids[rng.random(count_instances) < 0.05] *= -1  # crowds
            aspect = max(height, width) / min(height, width)
            moderate = aspect <= 3 and max(height, width) <= 160
            modes = ["square"] * 7 + (["crop"] * 2 + ["pad64"] if moderate else [])
            self.add_image(
                "fuzz",
                image_id,
                None,
                height=height,
                width=width,
                pixels_seed=int(rng.integers(2**31)),
                kinds=kinds,
                mode=str(rng.choice(modes)),
                masks=np.stack(masks, -1) if masks else np.zeros((height, width, 0), bool),
                class_ids=class_ids.astype(np.int32),
                mini=bool(rng.random() < 0.5),
            )
        self.prepare()

    def load_image(self, image_id):
        info = self.image_info[image_id]
        rng = np.random.default_rng(info["pixels_seed"])
        return rng.integers(0, 256, (info["height"], info["width"], 3), dtype=np.uint8)

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        return info["masks"], info["class_ids"]


def _anchor_count(shape, config):
    per_level = [int(np.ceil(shape[0] / s)) * int(np.ceil(shape[1] / s)) for s in config.BACKBONE_STRIDES]
    return sum(per_level) * len(config.RPN_ANCHOR_RATIOS)


def _is_subsequence(part, whole):
    it = iter(whole)
    return all(any(value == other for other in it) for value in part)


def check_image(dataset, image_id, anchors_cache):
    info = dataset.image_info[image_id]
    config = CONFIGS[info["mode"]]
    where = (
        f"fuzz seed {SEED}, image {image_id} ({info['height']}x{info['width']}, mode {info['mode']}, "
        f"mini {info['mini']}, instances {list(info['kinds'])}, ids {info['class_ids'].tolist()})"
    )

    image, meta, class_ids, boxes, masks = data.load_image_gt(
        dataset, config, image_id, use_mini_mask=info["mini"]
    )
    height, width = image.shape[:2]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, where
    if info["mode"] == "pad64":
        assert height % 64 == 0 and width % 64 == 0 and min(height, width) >= 64, (where, image.shape)
    else:
        assert image.shape == (64, 64, 3), (where, image.shape)
    parsed = data.parse_image_meta(meta[np.newaxis])
    assert parsed["original_image_shape"][0].tolist() == [info["height"], info["width"], 3], where
    assert parsed["image_shape"][0].tolist() == list(image.shape), where
    wy1, wx1, wy2, wx2 = parsed["window"][0]
    assert 0 <= wy1 < wy2 <= height and 0 <= wx1 < wx2 <= width, (where, parsed["window"][0])

    count = class_ids.shape[0]
    assert class_ids.dtype == np.int32 and boxes.dtype == np.int32 and masks.dtype == bool, where
    assert boxes.shape == (count, 4) and masks.shape[-1] == count, (where, boxes.shape, masks.shape)
    nonempty = info["masks"].any(axis=(0, 1))
    assert count <= int(nonempty.sum()), where
    assert _is_subsequence(class_ids.tolist(), info["class_ids"][nonempty].tolist()), where
    assert np.all(class_ids != 0) and np.all(np.abs(class_ids) < config.NUM_CLASSES), where
    assert np.all(boxes[:, 0] < boxes[:, 2]) and np.all(boxes[:, 1] < boxes[:, 3]), (where, boxes)
    assert np.all(boxes[:, :2] >= [wy1, wx1]) and np.all(boxes[:, 2:] <= [wy2, wx2]), (where, boxes)
    if info["mini"]:
        assert masks.shape[:2] == tuple(config.MINI_MASK_SHAPE), (where, masks.shape)
    else:
        assert masks.shape[:2] == (height, width), (where, masks.shape)
        np.testing.assert_array_equal(utils.extract_bboxes(masks), boxes, err_msg=where)
        outside = masks.copy()
        outside[wy1:wy2, wx1:wx2] = False
        assert not outside.any(), where
    if "full" in info["kinds"] and info["mode"] != "crop":
        assert [wy1, wx1, wy2, wx2] in boxes.tolist(), (where, boxes)

    shape = tuple(image.shape[:2])
    if shape not in anchors_cache:
        anchors_cache[shape] = utils.generate_pyramid_anchors(
            config.RPN_ANCHOR_SCALES,
            config.RPN_ANCHOR_RATIOS,
            compute_backbone_shapes(config, shape),
            config.BACKBONE_STRIDES,
            config.RPN_ANCHOR_STRIDE,
        )
    anchors = anchors_cache[shape]
    assert anchors.shape == (_anchor_count(shape, config), 4), where
    rpn_match, rpn_bbox = data_targets.build_rpn_targets(
        image.shape, anchors, class_ids, boxes, config, rng=np.random.default_rng([SEED, image_id])
    )
    train = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert rpn_match.shape == (anchors.shape[0],) and rpn_match.dtype == np.int32, where
    assert set(np.unique(rpn_match).tolist()) <= {-1, 0, 1}, where
    positive = np.flatnonzero(rpn_match == 1)
    assert positive.size <= train // 2 and np.count_nonzero(rpn_match) <= train, where
    assert rpn_bbox.shape == (train, 4) and np.all(np.isfinite(rpn_bbox)), where
    assert not rpn_bbox[positive.size :].any(), where
    objects = boxes[class_ids > 0]
    if objects.shape[0] == 0:
        assert positive.size == 0, where
        return count
    overlaps = utils.compute_overlaps(anchors, objects)
    assert np.all(overlaps[positive].max(axis=1) > 0), where
    assert np.all(overlaps[rpn_match == -1].max(axis=1) < 0.3), where
    # Each positive's deltas lead from its anchor to one of the object boxes.
    refined = utils.apply_box_deltas(anchors[positive], rpn_bbox[: positive.size] * config.RPN_BBOX_STD_DEV)
    distance = np.abs(refined[:, None, :] - objects[None, :, :].astype(np.float32)).max(axis=2)
    assert np.all(distance.min(axis=1) < 1e-2 * max(shape)), (where, distance.min(axis=1))
    return count


def test_fuzz_load_image_gt_and_rpn_targets():
    print(f"\nfuzz seed: {SEED} ({NUM_IMAGES} images; replay with MRCNN_FUZZ_SEED={SEED})")
    dataset = FuzzDataset(SEED, NUM_IMAGES, FuzzConfig.MAX_GT_INSTANCES)
    anchors_cache = {}
    counts = [check_image(dataset, image_id, anchors_cache) for image_id in dataset.image_ids]
    # The draw covered what it is meant to cover.
    sizes = [(info["height"], info["width"]) for info in dataset.image_info]
    assert min(min(s) for s in sizes) == 1 and max(max(s) / min(s) for s in sizes) >= 100, f"seed {SEED}"
    assert 0 in counts and max(counts) > FuzzConfig.MAX_GT_INSTANCES, f"seed {SEED}: counts {max(counts)}"
    assert {info["mode"] for info in dataset.image_info} == set(CONFIGS), f"seed {SEED}"


def test_fuzz_training_batches():
    """Batches of the square-mode fuzz images: instances capped at MAX_GT_INSTANCES, rows aligned."""
    print(f"\nfuzz seed: {SEED}")
    dataset = FuzzDataset(SEED + 1, 120, FuzzConfig.MAX_GT_INSTANCES)
    for info in dataset.image_info:
        info["mode"] = "square"
    config = CONFIGS["square"]
    sequence = data.MaskRCNNSequence(dataset, config, seed=SEED, steps=40)
    max_gt = config.MAX_GT_INSTANCES
    for index in range(len(sequence)):
        images, metas, rpn_match, rpn_bbox, class_ids, boxes, masks = sequence[index][0]
        where = f"fuzz seed {SEED}, batch {index}, images {metas[:, 0].astype(int).tolist()}"
        assert images.shape == (2, 64, 64, 3) and images.dtype == np.float32, where
        assert rpn_match.shape == (2, _anchor_count((64, 64), config), 1), where
        assert class_ids.shape == (2, max_gt) and boxes.shape == (2, max_gt, 4), where
        assert masks.shape == (2, 28, 28, max_gt), where
        used = class_ids != 0
        assert np.all(used.sum(axis=1) >= 1), where
        assert np.array_equal(used, boxes.any(axis=2)), where
        assert not np.any(masks.any(axis=(1, 2)) & ~used), where
        for row in range(2):  # padding only after the instances
            count = used[row].sum()
            assert used[row, :count].all() and not used[row, count:].any(), where
