"""Evaluate a model on a Dataset: COCO-style metrics through pycocotools and VOC-style mask mAP.

* ``dataset_to_coco``: any prepared ``Dataset`` -> a pycocotools ``COCO`` ground truth (image ids = the
  dataset's internal image ids, category ids = internal class ids).
* ``detections_to_coco``: one image's ``detect()`` output -> COCO result dicts (bbox [x, y, w, h] in
  pixels, RLE masks with str counts, JSON-serializable).
* ``coco_metrics``: COCOeval for "bbox" or "segm" -> the 12 standard numbers plus AP per class.
* ``evaluate_coco``: run ``model.detect`` over a dataset and return all of the above plus Matterport's
  ``compute_ap`` mask mAP@0.5.
* ``EvaluationCallback``: a Keras callback that evaluates every N epochs during training.
* ``StopAtTargetMAP``: a Keras callback that stops training once held-out mask mAP reaches a target, with
  a progress line and an estimate of the time left.
* ``evaluate_map``: VOC-style mask mAP at one or several IoU thresholds (``metrics.compute_ap``).

Boxes from ``detect()`` and ``extract_bboxes`` are (y1, x1, y2, x2) pixels with exclusive y2/x2; COCO
boxes are [x, y, width, height] with the same pixel extent (width = x2 - x1).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from mrcnn.boxes import extract_bboxes
from mrcnn.metrics import compute_ap

if TYPE_CHECKING:
    from pycocotools.coco import COCO

    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN
    from mrcnn.utils import Dataset

COCO_IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2))

# COCOeval.stats in order: AP@[.5:.95], AP@.5, AP@.75, AP small/medium/large, AR with 1/10/100
# detections, AR small/medium/large (100 detections).
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")
# The numbers EvaluationCallback adds to the Keras logs (all of them go to TensorBoard).
CALLBACK_LOG_STATS = ("AP", "AP50", "AP75")


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError("COCO-style evaluation needs pycocotools: pip install pycocotools") from e
    return COCO, COCOeval, mask_utils


def _encode_masks(masks):
    """bool [H, W, N] -> list of N RLE dicts with str counts (JSON-serializable)."""
    _, _, mask_utils = _pycocotools()
    rles = mask_utils.encode(np.asfortranarray(np.asarray(masks, dtype=np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _image_size(dataset, image_id, masks):
    """(height, width) of an image: from its masks, else its image_info, else the loaded image."""
    if masks.ndim == 3 and masks.shape[0] > 0 and masks.shape[1] > 0:
        return int(masks.shape[0]), int(masks.shape[1])
    info = dataset.image_info[image_id]
    if "height" in info and "width" in info:
        return int(info["height"]), int(info["width"])
    image = dataset.load_image(image_id)
    return int(image.shape[0]), int(image.shape[1])


def _coco_from_dict(data):
    COCO, _, _ = _pycocotools()
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def dataset_to_coco(dataset: Dataset, image_ids: Iterable[int] | None = None) -> COCO:
    """Ground truth of a prepared ``Dataset`` as a ``pycocotools.coco.COCO`` object.

    image_ids: internal image ids to include (default: all). COCO image ids are the internal image ids,
    category ids the internal class ids 1..num_classes-1 (names from ``class_names``). Each instance of
    ``load_mask`` becomes an RLE annotation with COCO's area (mask pixels) and bbox [x, y, w, h];
    negative class ids (Matterport's crowd convention) become ``iscrowd=1`` with the absolute class id.
    Empty masks are skipped; images without instances are kept (they count for false positives).
    """
    image_ids = [int(i) for i in (dataset.image_ids if image_ids is None else image_ids)]
    _, _, mask_utils = _pycocotools()
    images, annotations = [], []
    for image_id in image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        masks, class_ids = np.asarray(masks), np.asarray(class_ids).reshape(-1)
        height, width = _image_size(dataset, image_id, masks)
        images.append({"id": image_id, "height": height, "width": width})
        if class_ids.size == 0:
            continue
        if masks.ndim != 3 or masks.shape[:2] != (height, width) or masks.shape[2] != class_ids.size:
            raise ValueError(
                f"load_mask({image_id}) returned masks of shape {masks.shape} and "
                f"{class_ids.size} class ids; expected bool [H, W, N] with one class id per "
                "instance."
            )
        if np.any(np.abs(class_ids) >= dataset.num_classes) or np.any(class_ids == 0):
            raise ValueError(
                f"load_mask({image_id}) returned class ids {class_ids.tolist()}; expected "
                f"+-1..{dataset.num_classes - 1} (negative = crowd)."
            )
        for rle, class_id in zip(_encode_masks(masks.astype(bool)), class_ids):
            area = float(mask_utils.area(rle))
            if area == 0:
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(abs(class_id)),
                    "segmentation": rle,
                    "area": area,
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": int(class_id < 0),
                }
            )
    categories = [{"id": int(i), "name": dataset.class_names[i]} for i in range(1, dataset.num_classes)]
    return _coco_from_dict({"images": images, "annotations": annotations, "categories": categories})


def detections_to_coco(
    image_id: int,
    rois: np.ndarray,
    class_ids: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray | None,
    category_ids: Mapping[int, int] | Callable[[int], int] | None = None,
) -> list[dict[str, Any]]:
    """One image's detections as a list of COCO result dicts.

    image_id: the COCO image id to record. rois: [N, 4] (y1, x1, y2, x2) pixels, exclusive y2/x2.
    class_ids: [N] int; scores: [N] float; masks: bool [H, W, N] as returned by ``detect()`` (or None
    for box-only results). category_ids: optional dict or callable mapping a class id to the category id
    to record (e.g. the dataset's source ids); default: the class id itself.
    Each dict has image_id, category_id, bbox [x, y, w, h] (floats, pixels), score (float) and, with
    masks, segmentation (RLE with str counts).
    """
    rois = np.asarray(rois).reshape(-1, 4)
    class_ids = np.asarray(class_ids).reshape(-1)
    scores = np.asarray(scores).reshape(-1)
    if not len(rois) == len(class_ids) == len(scores):
        raise ValueError(
            f"rois ({len(rois)}), class_ids ({len(class_ids)}) and scores ({len(scores)}) must "
            "have one entry per detection."
        )
    rles = None
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[2] != len(rois):
            raise ValueError(f"masks must be [H, W, N] with N = {len(rois)} detections, got {masks.shape}.")
        rles = _encode_masks(masks.astype(bool)) if len(rois) else []
    if category_ids is None:

        def category(c):
            return c
    elif callable(category_ids):
        category = category_ids
    elif isinstance(category_ids, dict):
        category = category_ids.__getitem__
    else:
        raise TypeError(f"category_ids must be a dict or a callable, got {type(category_ids).__name__}.")
    results = []
    for i, (y1, x1, y2, x2) in enumerate(rois.astype(np.float64)):
        result = {
            "image_id": int(image_id),
            "category_id": int(category(int(class_ids[i]))),
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "score": float(scores[i]),
        }
        if rles is not None:
            result["segmentation"] = rles[i]
        results.append(result)
    return results


def _load_results(results):
    if isinstance(results, (str, os.PathLike)):
        if not os.path.isfile(results):
            raise FileNotFoundError(f"results file not found: {os.fspath(results)!r}")
        with open(results) as f:
            results = json.load(f)
    if not isinstance(results, (list, tuple)) or not all(isinstance(r, dict) for r in results):
        raise TypeError("results must be a list of COCO result dicts or the path of a JSON file holding one.")
    return list(results)


def coco_metrics(
    coco_gt: COCO,
    results: list[dict[str, Any]] | str | os.PathLike,
    iou_type: str,
    image_ids: Iterable[int] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """COCOeval of ``results`` against ``coco_gt`` for ``iou_type`` "bbox" or "segm".

    results: list of COCO result dicts (``detections_to_coco``) or the path of a results JSON file.
    image_ids: COCO image ids to evaluate (default: all images of ``coco_gt``). verbose: print
    COCOeval's log and summary. Returns a dict of floats with the 12 standard numbers (keys in
    COCO_STAT_NAMES: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl; -1 where undefined)
    and "per_class_ap" {category name: AP@[.5:.95]} (-1 for a category without ground truth).
    For "segm" the boxes of the results are dropped so a detection's area is its mask's (as detectron2
    does); for "bbox" the masks are dropped.
    """
    _, COCOeval, _ = _pycocotools()
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}.")
    needed, dropped = ("segmentation", "bbox") if iou_type == "segm" else ("bbox", "segmentation")
    results = _load_results(results)
    copies = []
    for index, result in enumerate(results):
        if needed not in result:
            raise ValueError(
                f"result {index} has no {needed!r}: {iou_type} evaluation needs it (box-only "
                "results can only be evaluated with iou_type='bbox')."
            )
        copies.append({k: v for k, v in result.items() if k != dropped})
    known = set(coco_gt.getImgIds())
    unknown = sorted({r["image_id"] for r in copies} - known)
    if unknown:
        raise ValueError(f"results name image ids that are not in the ground truth: {unknown[:10]}.")
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if copies:
            coco_dt = coco_gt.loadRes(copies)
        else:
            coco_dt = _coco_from_dict(
                {
                    "images": list(coco_gt.dataset["images"]),
                    "annotations": [],
                    "categories": list(coco_gt.dataset["categories"]),
                }
            )
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    per_class = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[coco_gt.cats[category_id]["name"]] = float(values.mean()) if values.size else -1.0
    metrics["per_class_ap"] = per_class
    return metrics


def _voc_ap50(coco_gt, image_id, r):
    """Matterport's compute_ap (mask IoU 0.5) of one image; None when it has no non-crowd ground truth."""
    anns = [a for a in coco_gt.imgToAnns.get(image_id, []) if not a["iscrowd"]]
    if not anns:
        return None
    gt_masks = np.stack([coco_gt.annToMask(a).astype(bool) for a in anns], axis=-1)
    gt_class_ids = np.array([a["category_id"] for a in anns], dtype=np.int32)
    ap, _, _, _ = compute_ap(
        extract_bboxes(gt_masks),
        gt_class_ids,
        gt_masks,
        r["rois"],
        r["class_ids"],
        r["scores"],
        r["masks"],
        iou_threshold=0.5,
    )
    return ap


def _print_summary(result):
    print(f"\nCOCO-style evaluation of {result['images']} images ({result['seconds']:.1f} s)")
    print("       " + "".join(f"{name:>7}" for name in COCO_STAT_NAMES))
    for iou_type in IOU_TYPES:
        if iou_type in result:
            print(f"  {iou_type:5}" + "".join(f"{result[iou_type][name]:7.3f}" for name in COCO_STAT_NAMES))
    print(f"  mask mAP@0.5 (VOC, compute_ap): {result['mAP50_voc']:.3f}")
    for iou_type in IOU_TYPES:
        if iou_type in result:
            classes = ", ".join(f"{name} {ap:.3f}" for name, ap in result[iou_type]["per_class_ap"].items())
            print(f"  {iou_type} AP per class: {classes}")


def evaluate_coco(
    model: MaskRCNN,
    dataset: Dataset,
    image_ids: Iterable[int] | None = None,
    limit: int | None = None,
    iou_types: Iterable[str] = IOU_TYPES,
    verbose: int = 1,
) -> dict[str, Any]:
    """Run ``model.detect`` over ``dataset`` and compute COCO-style metrics.

    model: an inference-mode ``mrcnn.model.MaskRCNN`` (images go through ``detect`` BATCH_SIZE at a
    time). image_ids: internal image ids (default: all); limit: use only the first ``limit`` of them.
    iou_types: any of "bbox", "segm". verbose: progress bar and a printed summary.
    Returns {"bbox": coco_metrics dict, "segm": ..., "mAP50_voc": mean Matterport ``compute_ap`` at mask
    IoU 0.5 over images with ground truth, "results": COCO result dicts (image ids = internal ids,
    category ids = class ids), "images": count, "seconds": wall time}.
    """
    iou_types = tuple(iou_types)
    if not iou_types or any(t not in IOU_TYPES for t in iou_types):
        raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types}.")
    if getattr(model, "mode", "inference") != "inference":
        raise ValueError("evaluate_coco needs an inference model: MaskRCNN(mode='inference', ...).")
    image_ids = [int(i) for i in (dataset.image_ids if image_ids is None else image_ids)]
    if limit:
        image_ids = image_ids[: int(limit)]
    start = time.perf_counter()
    coco_gt = dataset_to_coco(dataset, image_ids)
    batch = max(1, int(model.config.BATCH_SIZE))
    progress = keras.utils.Progbar(len(image_ids), unit_name="image") if verbose else None
    results, aps = [], []
    for first in range(0, len(image_ids), batch):
        chunk = image_ids[first : first + batch]
        detections = model.detect([dataset.load_image(i) for i in chunk])
        for image_id, r in zip(chunk, detections):
            results.extend(detections_to_coco(image_id, r["rois"], r["class_ids"], r["scores"], r["masks"]))
            ap = _voc_ap50(coco_gt, image_id, r)
            if ap is not None:
                aps.append(ap)
        if progress is not None:
            progress.add(len(chunk))
    output = {t: coco_metrics(coco_gt, results, t, image_ids=image_ids) for t in iou_types}
    output.update(
        {
            "mAP50_voc": float(np.mean(aps)) if aps else 0.0,
            "results": results,
            "images": len(image_ids),
            "seconds": time.perf_counter() - start,
        }
    )
    if verbose:
        _print_summary(output)
    return output


class EvaluationCallback(keras.callbacks.Callback):
    """Evaluate the model being trained every ``every`` epochs with ``evaluate_coco``.

    dataset: a prepared ``Dataset`` (e.g. the validation set); image_ids / limit: which images.
    config: the ``Config`` of the inference model; ``MaskRCNN.train`` fills in its own config when the
    callback has none, so pass it explicitly only when training a bare Keras model.
    At the end of every ``every``-th epoch an inference ``MaskRCNN`` (built once, then cached) gets the
    training model's weights by layer name and is evaluated. ``val_bbox_AP``, ``val_bbox_AP50``,
    ``val_bbox_AP75``, the same for segm, and ``val_mAP50_voc`` are added to ``logs`` (the progress bar
    and History show them); all 12 numbers of both types go to TensorBoard in ``log_dir/evaluation``
    (tags ``bbox/AP``, ``segm/AR100``, ..., ``mAP50_voc``) when ``log_dir`` is given. The full results
    of each evaluated epoch (0-based) are kept in ``self.history``.
    """

    def __init__(
        self,
        dataset: Dataset,
        every: int = 1,
        config: Config | None = None,
        image_ids: Iterable[int] | None = None,
        limit: int | None = None,
        log_dir: str | os.PathLike | None = None,
    ):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int (evaluate every N epochs), got {every!r}.")
        self.dataset = dataset
        self.every = every
        self.config = config
        self.image_ids = image_ids
        self.limit = limit
        self.log_dir = log_dir
        self.history = {}
        self._inference = None
        self._writer = None

    def use_training_config(self, config: Config) -> None:
        """Called by ``MaskRCNN.train`` with the run's config: used unless ``config=`` was given."""
        if self.config is None:
            self.config = config

    def _inference_model(self):
        if self._inference is None:
            from mrcnn.model import MaskRCNN

            config = self.config
            if config is None:
                raise ValueError(
                    "EvaluationCallback cannot find the model's configuration: pass "
                    "config=<your Config> (the training config works)."
                )
            self._inference = MaskRCNN(mode="inference", config=config, model_dir=self.log_dir or ".")
        return self._inference

    def copy_weights(self) -> MaskRCNN:
        """Copy the training model's weights into the inference model, layer by layer (by name).

        Returns the inference ``MaskRCNN``. Raises ValueError when a weighted inference layer is missing
        from the training model or its weight shapes differ (the configs do not match).
        """
        inference = self._inference_model()
        source = {layer.name: layer for layer in self.model.layers}
        for layer in inference.keras_model.layers:
            if not layer.weights:
                continue
            if layer.name not in source:
                raise ValueError(
                    f"layer {layer.name!r} of the inference model is not in the training model; "
                    "build both from the same config."
                )
            values = source[layer.name].get_weights()
            shapes = [tuple(w.shape) for w in layer.weights]
            if [v.shape for v in values] != shapes:
                raise ValueError(
                    f"layer {layer.name!r}: training weights {[v.shape for v in values]} do "
                    f"not fit the inference layer {shapes}; build both from the same config."
                )
            layer.set_weights(values)
        return inference

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every:
            return
        result = evaluate_coco(
            self.copy_weights(), self.dataset, image_ids=self.image_ids, limit=self.limit, verbose=0
        )
        result.pop("results")
        self.history[epoch] = result
        scalars = {"mAP50_voc": result["mAP50_voc"]}
        for iou_type in IOU_TYPES:
            for name in COCO_STAT_NAMES:
                scalars[f"{iou_type}/{name}"] = result[iou_type][name]
        if logs is not None:
            logs["val_mAP50_voc"] = result["mAP50_voc"]
            for iou_type in IOU_TYPES:
                for name in CALLBACK_LOG_STATS:
                    logs[f"val_{iou_type}_{name}"] = result[iou_type][name]
        if self.log_dir:
            self._write_tensorboard(scalars, epoch)

    def _write_tensorboard(self, scalars, epoch):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "evaluation"))
        with self._writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value, step=epoch)
        self._writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class StopAtTargetMAP(EvaluationCallback):
    """Stop training once the mask mAP on held-out images reaches both targets (checked every epoch).

    dataset: prepared held-out images (not the training images); map50 / map: the mAP@0.5 and
    mAP@[.5:.95] (``evaluate_map``) to reach; config as for ``EvaluationCallback``. After each epoch it
    prints one line: both numbers, images trained so far, time, and an estimate of the time left
    (the best-so-far mAP's rise over the last three epochs, extrapolated linearly to the farther
    target, times the last epoch's duration). ``self.reached``
    says whether training stopped at the targets; ``self.history`` keeps each epoch's numbers.
    """

    def __init__(
        self,
        dataset: Dataset,
        map50: float,
        map: float,
        config: Config | None = None,
        print_fn: Callable[[str], None] = print,
    ):
        super().__init__(dataset, every=1, config=config)
        for name, value in (("map50", map50), ("map", map)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be a target mAP in (0, 1], got {value!r}.")
        self.targets = {"mAP@0.5": float(map50), "mAP@[.5:.95]": float(map)}
        self.print_fn = print_fn
        self.reached = False
        self._start = self._epoch_start = None
        self._images = 0
        self._train_batch = None

    def use_training_config(self, config: Config) -> None:
        """Called by ``MaskRCNN.train``: its batch size counts the images trained on."""
        self._train_batch = int(config.BATCH_SIZE)
        super().use_training_config(config)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._start = time.monotonic()
        self.history = {}

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._images += self._train_batch or 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        result = evaluate_map(self.copy_weights(), self.dataset, verbose=0)
        numbers = {name: result[name] for name in self.targets}
        self.history[epoch] = numbers
        if logs is not None:
            logs["val_mask_mAP50"] = numbers["mAP@0.5"]
            logs["val_mask_mAP"] = numbers["mAP@[.5:.95]"]
        now = time.monotonic()
        elapsed = now - self._start
        self.reached = all(numbers[name] >= target for name, target in self.targets.items())
        if self.reached:
            self.model.stop_training = True
            outlook = "targets reached, stopping"
        else:
            outlook = self._time_left(now - self._epoch_start)
        self.print_fn(
            f"\nEpoch {epoch + 1}: validation mask mAP@0.5 {numbers['mAP@0.5']:.3f} "
            f"(target {self.targets['mAP@0.5']:.2f}), mAP@[.5:.95] {numbers['mAP@[.5:.95]']:.3f} "
            f"(target {self.targets['mAP@[.5:.95]']:.2f}); "
            + (f"{self._images:,} images in " if self._train_batch else "")
            + f"{elapsed / 60:.1f} min; {outlook}"
        )

    def _time_left(self, per_epoch: float) -> str:
        """'about N min left': the best mAP so far, rising as over the last three epochs, reaches the
        farther target in N epochs of ``per_epoch`` seconds (the last one, evaluation included); or why
        there is no estimate yet. The best-so-far curve ignores single noisy dips."""
        epochs = sorted(self.history)
        if len(epochs) < 3:
            return "estimate of the time left after 3 epochs"
        needed = 0.0
        for name, target in self.targets.items():
            best = [max(self.history[e][name] for e in epochs[: i + 1]) for i in range(len(epochs))]
            if best[-1] >= target:
                continue
            gain = (best[-1] - best[-3]) / 2
            if gain <= 0:
                return "no estimate of the time left yet (mAP did not rise over the last 3 epochs)"
            needed = max(needed, (target - best[-1]) / gain)
        minutes = needed * per_epoch / 60
        return "under a minute left" if minutes < 1 else f"about {minutes:.0f} min left"


def evaluate_map(
    model: MaskRCNN,
    dataset: Dataset,
    image_ids: Iterable[int] | None = None,
    iou_thresholds: Iterable[float] = COCO_IOU_THRESHOLDS,
    verbose: int = 1,
) -> dict[str, Any]:
    """Mean AP of ``model`` (inference mode) over ``dataset`` images.

    image_ids: images to use (default: all). Returns a dict with ``mAP@0.5`` (when 0.5 is among the
    thresholds), ``mAP@[.5:.95]`` (mean over all thresholds), ``per_threshold`` {iou: mAP}, ``images``
    (count, images without ground truth skipped) and ``seconds``.
    """
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    thresholds = [float(t) for t in iou_thresholds]
    aps = {t: [] for t in thresholds}
    batch = max(1, int(model.config.BATCH_SIZE))
    progress = keras.utils.Progbar(len(image_ids), unit_name="image") if verbose else None
    start = time.perf_counter()
    for first in range(0, len(image_ids), batch):
        chunk = image_ids[first : first + batch]
        images = [dataset.load_image(i) for i in chunk]
        results = model.detect(images)
        for image_id, r in zip(chunk, results):
            gt_masks, gt_class_ids = dataset.load_mask(image_id)
            keep = gt_class_ids > 0
            gt_masks, gt_class_ids = gt_masks[..., keep], gt_class_ids[keep]
            if gt_class_ids.size == 0:
                continue
            gt_boxes = extract_bboxes(gt_masks)
            for t in thresholds:
                ap, _, _, _ = compute_ap(
                    gt_boxes,
                    gt_class_ids,
                    gt_masks,
                    r["rois"],
                    r["class_ids"],
                    r["scores"],
                    r["masks"],
                    iou_threshold=t,
                )
                aps[t].append(ap)
        if progress is not None:
            progress.add(len(chunk))
    per_threshold = {t: float(np.mean(v)) if v else 0.0 for t, v in aps.items()}
    result = {
        "mAP@[.5:.95]": float(np.mean(list(per_threshold.values()))),
        "per_threshold": per_threshold,
        "images": len(aps[thresholds[0]]),
        "seconds": time.perf_counter() - start,
    }
    if 0.5 in per_threshold:
        result["mAP@0.5"] = per_threshold[0.5]
    return result
