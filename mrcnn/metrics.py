"""AP metrics (Matterport's): matching predictions to ground truth by mask IoU, VOC-style AP, box recall.

Boxes are (y1, x1, y2, x2) pixel boxes, zero rows being padding; masks are [H, W, N], one channel per
instance. ``mrcnn.evaluate`` runs these over a dataset; ``mrcnn.utils`` re-exports them.
"""

import numpy as np

from mrcnn.boxes import compute_overlaps, compute_overlaps_masks

__all__ = ["trim_zeros", "compute_matches", "compute_ap", "compute_ap_range", "compute_recall"]


def trim_zeros(x: np.ndarray) -> np.ndarray:
    """Drop the all-zero rows (padding) of a 2-D array such as [N, 4] boxes."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros expects a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


def compute_matches(
    gt_boxes,
    gt_class_ids,
    gt_masks,
    pred_boxes,
    pred_class_ids,
    pred_scores,
    pred_masks,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match predictions to ground truth by mask IoU.

    gt_boxes [G, 4], gt_class_ids [G], gt_masks [H, W, G]; pred_* likewise with pred_scores [P]. Zero-padded
    box rows are trimmed. Predictions are taken by descending score; each one takes the unmatched GT with
    the highest IoU if that IoU >= iou_threshold and the classes agree.
    Returns (gt_match [G], pred_match [P], overlaps [P, G]): gt_match holds the matched prediction index
    (in score order) or -1, pred_match the matched GT index or -1, both float64; overlaps float32 mask IoUs
    with predictions in score order.

    Fix: Matterport compared score_threshold with IoUs; here predictions with score < score_threshold are
    left unmatched (pred_match -1). The default 0.0 gives Matterport's results.
    """
    gt_boxes = trim_zeros(gt_boxes)
    gt_masks = np.asarray(gt_masks)[..., : gt_boxes.shape[0]]
    pred_boxes = trim_zeros(pred_boxes)
    pred_scores = np.asarray(pred_scores)[: pred_boxes.shape[0]]
    order = np.argsort(-pred_scores, kind="stable")
    pred_class_ids = np.asarray(pred_class_ids)[order]
    pred_scores = pred_scores[order]
    pred_masks = np.asarray(pred_masks)[..., order]
    gt_class_ids = np.asarray(gt_class_ids)

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    pred_match = -np.ones(len(order))
    gt_match = -np.ones(gt_boxes.shape[0])
    for i in range(len(order)):
        if pred_scores[i] < score_threshold:
            continue
        for j in np.argsort(-overlaps[i], kind="stable"):
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(
    gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks, iou_threshold=0.5
) -> tuple[np.float64, np.ndarray, np.ndarray, np.ndarray]:
    """Average precision at one mask-IoU threshold (VOC all-point interpolation).

    Arguments as in ``compute_matches``. Returns (mAP numpy float64 as Matterport's, precisions [P+2],
    recalls [P+2], overlaps
    [P, G]); precisions and recalls carry sentinels (precision 0 at both ends, recall 0 and 1) and
    precisions are made monotonically non-increasing. With no ground truth, recall and AP are 0.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks, iou_threshold
    )
    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    recalls = hits.astype(np.float32) / max(len(gt_match), 1)
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
    m_ap = np.float64(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return m_ap, precisions, recalls, overlaps


def compute_ap_range(
    gt_box,
    gt_class_id,
    gt_mask,
    pred_box,
    pred_class_id,
    pred_score,
    pred_mask,
    iou_thresholds=None,
    verbose: int = 1,
) -> np.float64:
    """Mean AP over IoU thresholds (default 0.50:0.05:0.95), a numpy float64 as Matterport's; prints each
    AP when verbose."""
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    aps = []
    for threshold in iou_thresholds:
        ap = compute_ap(
            gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask, threshold
        )[0]
        if verbose:
            print(f"AP @{threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = np.float64(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou: float) -> tuple[float, np.ndarray]:
    """Box recall at an IoU threshold.

    pred_boxes [P, 4], gt_boxes [G, 4]. Returns (recall: fraction of GT boxes that are the best match of
    some prediction with IoU >= iou, positive_ids: int indices of such predictions).
    """
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    if overlaps.size == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    iou_max = overlaps.max(axis=1)
    iou_argmax = overlaps.argmax(axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    recall = len(set(iou_argmax[positive_ids].tolist())) / overlaps.shape[1]
    return recall, positive_ids
