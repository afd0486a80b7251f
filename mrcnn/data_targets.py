"""Numpy training targets for one image: RPN anchor labels and deltas, random ROIs, head targets.

Conventions: pixel boxes are (y1, x1, y2, x2) with exclusive y2/x2, in the coordinates of the molded
(resized and padded) image; deltas are (dy, dx, log(dh), log(dw)) (``mrcnn.boxes.box_refinement``).
Masks are bool [H, W, N] (full size) or [h, w, N] mini masks (``config.MINI_MASK_SHAPE``).

Randomness: functions that sample take an optional keyword ``rng`` (a ``numpy.random.Generator``);
without it they draw from numpy's global state (seed with ``np.random.seed``), as Matterport does.
``mrcnn.data`` builds its batches from these functions; ``mrcnn.model`` re-exports the three public ones
under Matterport's names.
"""

import numpy as np

from mrcnn.boxes import box_refinement, compute_overlaps
from mrcnn.transform import expand_mask, resize

__all__ = ["build_rpn_targets", "generate_random_rois", "build_detection_targets", "resolve_rng"]

# Bound on the elements of one anchors x boxes IoU block (keeps memory flat for large images).
_IOU_BLOCK_ELEMENTS = 1 << 20


def resolve_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` if given, else a Generator seeded from numpy's global state (so np.random.seed applies)."""
    if rng is not None:
        return rng
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


def _max_iou(anchors, boxes):
    """Per-anchor max IoU and argmax over ``boxes``, plus which anchors tie a box's max IoU (> 0).

    Computed in column blocks so memory stays bounded; argmax keeps the first box on ties (as np.argmax).
    Returns (iou_max float64 [A], iou_argmax int [A], tied bool [A]).
    """
    num_anchors = anchors.shape[0]
    iou_max = np.full(num_anchors, -1.0)
    iou_argmax = np.zeros(num_anchors, dtype=np.int64)
    tied = np.zeros(num_anchors, dtype=bool)
    block = max(1, _IOU_BLOCK_ELEMENTS // max(num_anchors, 1))
    for start in range(0, boxes.shape[0], block):
        overlaps = compute_overlaps(anchors, boxes[start : start + block])
        block_argmax = overlaps.argmax(axis=1)
        block_max = overlaps[np.arange(num_anchors), block_argmax]
        better = block_max > iou_max
        iou_max[better] = block_max[better]
        iou_argmax[better] = block_argmax[better] + start
        box_max = overlaps.max(axis=0)
        tied |= ((overlaps == box_max) & (box_max > 0)).any(axis=1)
    return iou_max, iou_argmax, tied


def build_rpn_targets(
    image_shape,
    anchors: np.ndarray,
    gt_class_ids,
    gt_boxes,
    config,
    *,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """RPN training targets for one image.

    image_shape: unused (kept for Matterport compatibility). anchors: [A, 4] pixel boxes; gt_class_ids:
    [G] (negative = crowd); gt_boxes: [G, 4] pixel boxes. rng: optional Generator for the subsampling.

    Rules (Matterport's): crowd boxes are not matched, and anchors with IoU >= 0.001 with a crowd are
    never negative; an anchor is negative if its max IoU < 0.3; every anchor tied for a box's max IoU
    is positive; IoU >= 0.7 is positive. Positives are capped at RPN_TRAIN_ANCHORS_PER_IMAGE // 2 and
    negatives at the remaining count, the excess set to neutral at random. Fix: a box overlapping no
    anchor at all (max IoU 0) makes no anchor positive (Matterport made every anchor a tie).

    Returns rpn_match int32 [A] (1 positive, -1 negative, 0 neutral) and rpn_bbox float64
    [RPN_TRAIN_ANCHORS_PER_IMAGE, 4]: (dy, dx, log(dh), log(dw)) from each positive anchor (in index
    order) to its best-IoU box, divided by RPN_BBOX_STD_DEV, zero padded.
    """
    rng = resolve_rng(rng)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    num_train = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    rpn_match = np.zeros(anchors.shape[0], dtype=np.int32)
    rpn_bbox = np.zeros((num_train, 4), dtype=np.float64)

    crowd = gt_class_ids < 0
    if crowd.any():
        crowd_iou, _, _ = _max_iou(anchors, gt_boxes[crowd])
        not_crowd = crowd_iou < 0.001
        gt_boxes = gt_boxes[~crowd]
    else:
        not_crowd = np.ones(anchors.shape[0], dtype=bool)

    if gt_boxes.shape[0] == 0:
        rpn_match[not_crowd] = -1
        iou_argmax = np.zeros(anchors.shape[0], dtype=np.int64)
    else:
        iou_max, iou_argmax, tied = _max_iou(anchors, gt_boxes)
        rpn_match[(iou_max < 0.3) & not_crowd] = -1
        rpn_match[tied] = 1
        rpn_match[iou_max >= 0.7] = 1

    positives = np.flatnonzero(rpn_match == 1)
    extra = positives.size - num_train // 2
    if extra > 0:
        rpn_match[rng.choice(positives, extra, replace=False)] = 0
        positives = np.flatnonzero(rpn_match == 1)
    negatives = np.flatnonzero(rpn_match == -1)
    extra = negatives.size - (num_train - positives.size)
    if extra > 0:
        rpn_match[rng.choice(negatives, extra, replace=False)] = 0

    gt = gt_boxes[iou_argmax[positives]] if positives.size else np.zeros((0, 4))
    deltas = box_refinement(anchors[positives], gt, dtype=np.float64)
    rpn_bbox[: positives.size] = deltas / np.asarray(config.RPN_BBOX_STD_DEV, dtype=np.float64)
    return rpn_match, rpn_bbox


def _random_spans(rng, count, low, high):
    """``count`` random integer spans (a, b) with low <= a < b <= high (high raised to low + 1 if needed)."""
    high = max(high, low + 1)
    a = rng.integers(low, high + 1, size=count)
    b = rng.integers(low, high, size=count)
    b = b + (b >= a)  # uniform over values != a
    return np.minimum(a, b), np.maximum(a, b)


def _random_boxes(rng, count, y_range, x_range):
    y1, y2 = _random_spans(rng, count, *y_range)
    x1, x2 = _random_spans(rng, count, *x_range)
    return np.stack([y1, x1, y2, x2], axis=1)


def generate_random_rois(
    image_shape, count: int, gt_class_ids, gt_boxes, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Random ROIs for training the heads without the RPN (``USE_RPN_ROIS = False``) or for debugging.

    About 90% of the ROIs are spread evenly over the gt boxes, each drawn inside its box expanded by the
    box's own height and width (clipped to the image); the rest anywhere in the image. Every ROI has
    positive area. gt_class_ids is unused (Matterport's signature). Returns int32 [count, 4] pixel boxes.
    """
    rng = resolve_rng(rng)
    height, width = int(image_shape[0]), int(image_shape[1])
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4).astype(np.int64)
    per_box = int(0.9 * count / gt_boxes.shape[0]) if gt_boxes.shape[0] else 0
    parts = []
    for y1, x1, y2, x2 in gt_boxes:
        h, w = y2 - y1, x2 - x1
        parts.append(
            _random_boxes(
                rng, per_box, (max(y1 - h, 0), min(y2 + h, height)), (max(x1 - w, 0), min(x2 + w, width))
            )
        )
    parts.append(_random_boxes(rng, count - per_box * gt_boxes.shape[0], (0, height), (0, width)))
    return np.concatenate(parts, axis=0).astype(np.int32)


def build_detection_targets(
    rpn_rois, gt_class_ids, gt_boxes, gt_masks, config, *, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targets of the classifier and mask heads for given ROIs (debugging / visualization path).

    rpn_rois: int [R, 4] pixel boxes; gt_class_ids: int [G]; gt_boxes: int [G, 4]; gt_masks: bool
    [H, W, G] or mini masks [h, w, G] when config.USE_MINI_MASK. Crowd instances (negative ids) are
    ignored. ROIs with IoU > 0.5 are foreground (at most int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO)),
    IoU < 0.5 background; if short of TRAIN_ROIS_PER_IMAGE, background ROIs (else the chosen ones) are
    repeated. Returns (rois int32 [T, 4], class_ids int32 [T] (0 for background), bboxes float32
    [T, NUM_CLASSES, 4] (deltas / BBOX_STD_DEV at the true class), masks float32 [T, MASK_SHAPE[0],
    MASK_SHAPE[1], NUM_CLASSES] (the gt mask cropped to the ROI and resized, at the true class)).
    """
    rng = resolve_rng(rng)
    rpn_rois, gt_class_ids, gt_boxes, gt_masks = (
        np.asarray(a) for a in (rpn_rois, gt_class_ids, gt_boxes, gt_masks)
    )
    for name, array in (("rpn_rois", rpn_rois), ("gt_class_ids", gt_class_ids), ("gt_boxes", gt_boxes)):
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} must be an integer array (int32 pixel values), got {array.dtype}")
    if gt_masks.dtype != bool:
        raise TypeError(f"gt_masks must be bool, got {gt_masks.dtype}; use gt_masks.astype(bool)")
    if rpn_rois.shape[0] == 0:
        raise ValueError("build_detection_targets needs at least one ROI")
    instance = gt_class_ids > 0
    gt_class_ids, gt_boxes, gt_masks = gt_class_ids[instance], gt_boxes[instance], gt_masks[..., instance]
    num_rois = config.TRAIN_ROIS_PER_IMAGE

    if gt_boxes.shape[0]:
        iou_max, iou_argmax, _ = _max_iou(rpn_rois.astype(np.float64), gt_boxes.astype(np.float64))
    else:
        iou_max = np.zeros(rpn_rois.shape[0])
        iou_argmax = np.zeros(rpn_rois.shape[0], dtype=np.int64)
    fg = np.flatnonzero(iou_max > 0.5)
    bg = np.flatnonzero(iou_max < 0.5)
    fg_count = int(num_rois * config.ROI_POSITIVE_RATIO)
    keep_fg = rng.choice(fg, fg_count, replace=False) if fg.size > fg_count else fg
    remaining = num_rois - keep_fg.size
    keep_bg = rng.choice(bg, remaining, replace=False) if bg.size > remaining else bg
    keep = np.concatenate([keep_fg, keep_bg])
    remaining = num_rois - keep.size
    if remaining > 0:
        if keep.size == 0:
            raise ValueError("no ROI is foreground or background (all have IoU exactly 0.5); cannot sample")
        pool = keep_bg if keep_bg.size else keep
        keep = np.concatenate([keep, rng.choice(pool, remaining, replace=True)])

    rois = rpn_rois[keep].astype(np.int32)
    matched = iou_argmax[keep_fg]
    class_ids = np.zeros(num_rois, dtype=np.int32)
    class_ids[: keep_fg.size] = gt_class_ids[matched]
    positive = np.arange(keep_fg.size)

    bboxes = np.zeros((num_rois, config.NUM_CLASSES, 4), dtype=np.float32)
    bboxes[positive, class_ids[positive]] = box_refinement(
        rois[positive].astype(np.float32), gt_boxes[matched].astype(np.float32)
    ) / np.asarray(config.BBOX_STD_DEV, dtype=np.float32)

    mask_shape = tuple(config.MASK_SHAPE)
    masks = np.zeros((num_rois,) + mask_shape + (config.NUM_CLASSES,), dtype=np.float32)
    if keep_fg.size:
        full_masks = gt_masks
        if config.USE_MINI_MASK:
            full_masks = expand_mask(gt_boxes, gt_masks, config.IMAGE_SHAPE)
        for i, gt_id in zip(positive, matched):
            y1, x1, y2, x2 = rois[i]
            crop = full_masks[y1:y2, x1:x2, gt_id]
            if crop.size:
                masks[i, :, :, class_ids[i]] = resize(crop.astype(np.float32), mask_shape)
    return rois, class_ids, bboxes, masks
