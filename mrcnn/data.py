"""Numpy input pipeline: ground truth loading, image metas and training batches (targets: ``data_targets``).

Conventions: pixel boxes are (y1, x1, y2, x2) int32 with exclusive y2/x2, in the coordinates of the
molded (resized and padded) image. Masks are bool [H, W, N] (full size) or [h, w, N] mini masks
(``config.MINI_MASK_SHAPE``, each instance cropped to its box).

Training input for Keras 3: ``MaskRCNNSequence`` (a ``keras.utils.PyDataset``) rather than tf.data.
The targets are built in numpy with data-dependent sampling (skip empty images, retry failing ones,
random subsets) that would have to be wrapped in ``tf.numpy_function`` anyway; a PyDataset runs the
same numpy code in worker threads or processes (``workers`` / ``use_multiprocessing``) and lets
``fit`` prefetch it. Every batch is a pure function of (seed, epoch, batch index), so results do not
depend on worker scheduling. ``data_generator`` is Matterport's infinite generator over the same code.

Randomness: functions that sample take an optional keyword ``rng`` (a ``numpy.random.Generator``);
without it they draw from numpy's global state (seed with ``np.random.seed``), as Matterport does.
"""

import logging
import math
import os
import random
import threading

import keras
import numpy as np

from mrcnn import augment
from mrcnn.anchors import config_anchors
from mrcnn.boxes import extract_bboxes
from mrcnn.data_targets import build_detection_targets, build_rpn_targets, generate_random_rois, resolve_rng
from mrcnn.transform import (  # noqa: F401  (re-exported: Matterport's names)
    check_pixels,
    compose_image_meta,
    minimize_mask,
    mold_image,
    parse_image_meta,
    resize_image_for,
    resize_mask,
    unmold_image,
)

__all__ = [
    "INPUT_NAMES",
    "compose_image_meta",
    "parse_image_meta",
    "check_pixels",
    "mold_image",
    "unmold_image",
    "load_image_gt",
    "data_generator",
    "MaskRCNNSequence",
]

logger = logging.getLogger(__name__)

# Keras input names of the training model, in batch order.
INPUT_NAMES = (
    "input_image",
    "input_image_meta",
    "input_rpn_match",
    "input_rpn_bbox",
    "input_gt_class_ids",
    "input_gt_boxes",
    "input_gt_masks",
)
# imgaug augmenters that are also applied to the masks (the others, e.g. colour changes, are image-only).
IMGAUG_MASK_AUGMENTERS = (
    "Sequential",
    "SomeOf",
    "OneOf",
    "Sometimes",
    "Fliplr",
    "Flipud",
    "CropAndPad",
    "Affine",
    "PiecewiseAffine",
)
# Consecutive image failures after which the input pipeline gives up.
MAX_CONSECUTIVE_FAILURES = 5


############################################################
#  Ground truth
############################################################


def _checked_instances(image, mask, class_ids, image_id, config):
    """Validate load_image / load_mask output; returns (image, bool mask [H, W, N], int32 ids [N])."""
    image = np.asarray(image)
    channels = config.IMAGE_CHANNEL_COUNT
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(
            f"image {image_id}: load_image returned shape {image.shape}; expected [H, W, {channels}] "
            f"(IMAGE_CHANNEL_COUNT={channels}). Convert grayscale/RGBA images in load_image, or set "
            "IMAGE_CHANNEL_COUNT and MEAN_PIXEL for your channel count."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image {image_id}: load_image returned an empty image of shape {image.shape}.")
    check_pixels(image, config, f"image {image_id} (from load_image)")
    mask = np.asarray(mask)
    class_ids = np.atleast_1d(np.asarray(class_ids))
    if mask.ndim != 3:
        raise ValueError(
            f"image {image_id}: load_mask returned masks of shape {mask.shape}; expected [H, W, N] with one "
            "channel per instance (use mask[..., np.newaxis] for a single instance)."
        )
    if mask.shape[-1] == 0:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"image {image_id}: load_mask returned {mask.shape[0]}x{mask.shape[1]} masks for a "
            f"{image.shape[0]}x{image.shape[1]} image; masks must have the image's height and width."
        )
    if class_ids.ndim != 1 or class_ids.shape[0] != mask.shape[-1]:
        raise ValueError(
            f"image {image_id}: load_mask returned {class_ids.size} class ids (shape {class_ids.shape}) for "
            f"{mask.shape[-1]} masks; return one class id per mask channel."
        )
    if class_ids.size and not np.all(np.mod(class_ids, 1) == 0):
        raise ValueError(f"image {image_id}: class ids must be integers, got {class_ids.tolist()}.")
    class_ids = class_ids.astype(np.int32)
    bad = class_ids[(class_ids == 0) | (np.abs(class_ids) >= config.NUM_CLASSES)]
    if bad.size:
        raise ValueError(
            f"image {image_id}: class ids {sorted(set(bad.tolist()))} are out of range; instance ids must be "
            f"in 1..{config.NUM_CLASSES - 1} (negative for crowds; 0 is the background). Map source ids "
            "with dataset.map_source_class_id and set config.NUM_CLASSES = dataset.num_classes."
        )
    return image, mask.astype(bool, copy=False), class_ids


def _imgaug_mask_hook(images, augmenter, parents, default):
    """imgaug activator: only geometric augmenters (IMGAUG_MASK_AUGMENTERS) touch the masks."""
    return type(augmenter).__name__ in IMGAUG_MASK_AUGMENTERS


def _augmented(augmentation, image, mask, image_id, rng):
    """Apply an mrcnn.augment augmenter, any (image, masks) callable, or an imgaug augmenter."""
    image_shape, mask_shape = image.shape, mask.shape
    if hasattr(augmentation, "to_deterministic"):
        import imgaug

        deterministic = augmentation.to_deterministic()
        image = deterministic.augment_image(image)
        if mask.shape[-1]:
            mask = deterministic.augment_image(
                mask.astype(np.uint8), hooks=imgaug.HooksImages(activator=_imgaug_mask_hook)
            )
    elif isinstance(augmentation, augment.Augmenter):
        image, mask = augmentation(image, mask, rng=rng)
    elif callable(augmentation):
        image, mask = augmentation(image, mask)
    else:
        raise TypeError(
            f"augmentation must be a callable (image, masks) -> (image, masks) (see mrcnn.augment) or an "
            f"imgaug augmenter, got {type(augmentation).__name__}"
        )
    image, mask = np.asarray(image), np.asarray(mask)
    if image.shape != image_shape or mask.shape != mask_shape:
        raise ValueError(
            f"image {image_id}: augmentation changed the shapes (image {image_shape} -> {image.shape}, "
            f"masks {mask_shape} -> {mask.shape}); use size-preserving augmenters (crop/pad back to the "
            "input size)."
        )
    return image, mask.astype(bool)


def load_image_gt(
    dataset, config, image_id, augment=False, augmentation=None, use_mini_mask=False, *, rng=None
):
    """Load an image with its instances, resized for the network.

    dataset: a prepared utils.Dataset; image_id: internal image id.
    augment: deprecated; True flips left-right with probability 0.5 (logs a warning).
    augmentation: a callable ``(image, masks) -> (image, masks)`` (e.g. from mrcnn.augment), or an
        imgaug augmenter (applied deterministically to the image and to the uint8 masks, the masks only
        through IMGAUG_MASK_AUGMENTERS). It must keep the shapes. Instances it empties are dropped.
    use_mini_mask: return masks cropped to their boxes and resized to config.MINI_MASK_SHAPE.
    rng: optional numpy Generator for the "crop" resize mode's crop and the flip, passed to mrcnn.augment
        augmenters (else their own, and Python's global ``random`` for the crop, as Matterport).

    Returns (image [H, W, C] in the dataset's dtype (uint8), image_meta float64 [12 + NUM_CLASSES],
    class_ids int32 [N], bbox int32 [N, 4] pixel boxes of the resized image, mask bool [H, W, N] or
    [h, w, N]). Raises ValueError naming the image when load_image/load_mask return inconsistent data.
    """
    image, mask, class_ids = _checked_instances(
        dataset.load_image(image_id), *dataset.load_mask(image_id), image_id, config
    )
    original_shape = image.shape
    image, window, scale, padding, crop = resize_image_for(image, config, rng=rng)
    mask = resize_mask(mask, scale, padding, crop)

    if augment:
        logger.warning(
            "'augment' is deprecated. Use 'augmentation' instead (e.g. mrcnn.augment.Fliplr(0.5))."
        )
        if resolve_rng(rng).random() < 0.5:
            image, mask = np.fliplr(image), np.fliplr(mask)
    if augmentation is not None:
        image, mask = _augmented(augmentation, image, mask, image_id, rng)

    visible = mask.any(axis=(0, 1))
    mask, class_ids = mask[:, :, visible], class_ids[visible]
    bbox = extract_bboxes(mask)

    source_class_ids = dataset.source_class_ids[dataset.image_info[image_id]["source"]]
    if max(source_class_ids) >= config.NUM_CLASSES:
        raise ValueError(
            f"image {image_id}: the dataset has {dataset.num_classes} classes (background included) but "
            f"config.NUM_CLASSES is {config.NUM_CLASSES}; set NUM_CLASSES = dataset.num_classes."
        )
    active_class_ids = np.zeros([config.NUM_CLASSES], dtype=np.int32)
    active_class_ids[source_class_ids] = 1

    if use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale, active_class_ids)
    return image, image_meta, class_ids, bbox, mask


############################################################
#  Batches
############################################################


class _SampleBuilder:
    """Loads one training sample (all arrays of one image) and stacks samples into batches."""

    def __init__(
        self,
        dataset,
        config,
        augment=False,
        augmentation=None,
        random_rois=0,
        detection_targets=False,
        no_augmentation_sources=None,
    ):
        self.dataset = dataset
        self.config = config
        self.augment = augment
        self.augmentation = augmentation
        self.random_rois = int(random_rois)
        self.detection_targets = bool(detection_targets)
        self.no_augmentation_sources = set(no_augmentation_sources or ())

    def anchors(self, image_shape):
        """Pixel anchors [A, 4] for a molded image shape (cached by ``mrcnn.anchors``, read-only)."""
        return config_anchors(self.config, image_shape)[0]

    def load(self, image_id, rng):
        """The sample dict of ``image_id``, or None when the image has no instance with a positive class."""
        config = self.config
        augmentation, augment_flag = self.augmentation, self.augment
        if self.dataset.image_info[image_id]["source"] in self.no_augmentation_sources:
            augmentation, augment_flag = None, False
        image, image_meta, class_ids, boxes, masks = load_image_gt(
            self.dataset,
            config,
            image_id,
            augment=augment_flag,
            augmentation=augmentation,
            use_mini_mask=config.USE_MINI_MASK,
            rng=rng,
        )
        if not np.any(class_ids > 0):
            return None
        rpn_match, rpn_bbox = build_rpn_targets(
            image.shape, self.anchors(image.shape), class_ids, boxes, config, rng=rng
        )
        sample = {"rpn_match": rpn_match, "rpn_bbox": rpn_bbox}
        if self.random_rois:
            sample["rpn_rois"] = generate_random_rois(
                image.shape, self.random_rois, class_ids, boxes, rng=rng
            )
            if self.detection_targets:
                (sample["rois"], sample["mrcnn_class_ids"], sample["mrcnn_bbox"], sample["mrcnn_mask"]) = (
                    build_detection_targets(sample["rpn_rois"], class_ids, boxes, masks, config, rng=rng)
                )
        if class_ids.shape[0] > config.MAX_GT_INSTANCES:
            chosen = np.sort(rng.choice(class_ids.shape[0], config.MAX_GT_INSTANCES, replace=False))
            class_ids, boxes, masks = class_ids[chosen], boxes[chosen], masks[:, :, chosen]
        sample.update(
            image=mold_image(image, config),
            image_meta=image_meta,
            gt_class_ids=class_ids,
            gt_boxes=boxes,
            gt_masks=masks,
        )
        return sample

    def batch(self, samples):
        """Stack samples: returns (inputs list, outputs list) in data_generator's order and dtypes."""
        shapes = {s["image"].shape for s in samples}
        if len(shapes) > 1:
            raise ValueError(
                f"images of one batch have different molded shapes {sorted(shapes)}; use IMAGE_RESIZE_MODE "
                "'square' or 'crop' (fixed size) or a batch size of 1."
            )
        size, max_gt = len(samples), self.config.MAX_GT_INSTANCES
        first = samples[0]
        gt_class_ids = np.zeros((size, max_gt), dtype=np.int32)
        gt_boxes = np.zeros((size, max_gt, 4), dtype=np.int32)
        gt_masks = np.zeros((size,) + first["gt_masks"].shape[:2] + (max_gt,), dtype=bool)
        for i, s in enumerate(samples):
            n = s["gt_class_ids"].shape[0]
            gt_class_ids[i, :n] = s["gt_class_ids"]
            gt_boxes[i, :n] = s["gt_boxes"]
            gt_masks[i, :, :, :n] = s["gt_masks"]
        inputs = [
            np.stack([s["image"] for s in samples]).astype(np.float32, copy=False),
            np.stack([s["image_meta"] for s in samples]).astype(np.float32),
            np.stack([s["rpn_match"] for s in samples])[:, :, np.newaxis].astype(np.int32, copy=False),
            np.stack([s["rpn_bbox"] for s in samples]).astype(np.float32),
            gt_class_ids,
            gt_boxes,
            gt_masks,
        ]
        outputs = []
        if self.random_rois:
            inputs.append(np.stack([s["rpn_rois"] for s in samples]))
            if self.detection_targets:
                inputs.append(np.stack([s["rois"] for s in samples]))
                outputs = [
                    np.stack([s["mrcnn_class_ids"] for s in samples])[:, :, np.newaxis],
                    np.stack([s["mrcnn_bbox"] for s in samples]),
                    np.stack([s["mrcnn_mask"] for s in samples]),
                ]
        return inputs, outputs


class _SkipTracker:
    """Counts skipped images; raises when too many fail in a row or a whole pass yields nothing.

    failures: an ``_EpochFailures`` that records (and counts) failing images instead of a warning each.
    """

    def __init__(self, num_images, failures=None):
        self.num_images = num_images
        self.failures = failures
        self.failed_ids = []
        self.misses = 0

    def attempt(self, builder, image_id, rng):
        """builder.load(image_id) with failures logged and skipped; returns the sample or None."""
        try:
            sample = builder.load(image_id, rng)
        except Exception as error:
            self.failed_ids.append(int(image_id))
            if self.failures is not None:
                self.failures.record(image_id, error)
            else:
                logger.warning(
                    "Error loading image %s (%s: %s); skipping it.",
                    image_id,
                    type(error).__name__,
                    error,
                    exc_info=True,
                )
            if len(self.failed_ids) >= MAX_CONSECUTIVE_FAILURES:
                raise RuntimeError(
                    f"{len(self.failed_ids)} consecutive images failed to load (image ids "
                    f"{self.failed_ids}); last error: {type(error).__name__}: {error}"
                ) from error
            sample = None
        else:
            self.failed_ids = []
        self.misses = 0 if sample is not None else self.misses + 1
        if self.misses >= max(self.num_images, MAX_CONSECUTIVE_FAILURES):
            raise RuntimeError(
                f"{self.misses} images in a row were skipped and none of the dataset's {self.num_images} "
                "images gave a sample: images need at least one instance with a positive class id."
            )
        return sample


class _EpochFailures:
    """The images of one epoch of a ``MaskRCNNSequence`` whose loading raised, shared by its worker threads.

    The first failure of the sequence is logged as a warning with its traceback, later ones at debug level;
    ``end_epoch`` logs one line per epoch that counts them and names the epoch's first error. When more
    images fail than the epoch delivers (``epoch_images``), most of the epoch's images failed: ``record``
    raises RuntimeError. (Failures in worker processes, ``use_multiprocessing=True``, stay in those.)
    """

    def __init__(self, dataset, epoch_images):
        self.dataset = dataset
        self.epoch_images = int(epoch_images)
        self._lock = threading.Lock()
        self._logged_traceback = False
        self.count = 0
        self.first = None

    def _describe(self, image_id, error):
        path = self.dataset.image_info[int(image_id)].get("path")
        where = f"image {image_id}" + (f" ({path})" if path else "")
        return f"{where}: {type(error).__name__}: {error}"

    def record(self, image_id, error):
        """Count one failing image; raise RuntimeError once most of the epoch's images failed."""
        with self._lock:
            self.count += 1
            count = self.count
            if self.first is None:
                self.first = self._describe(image_id, error)
            first_ever = not self._logged_traceback
            self._logged_traceback = True
        if first_ever:
            logger.warning(
                "Error loading %s; skipping it. Further failures are counted in one line at the end of "
                "each epoch.",
                self._describe(image_id, error),
                exc_info=error,
            )
        else:
            logger.debug("Error loading %s; skipping it.", self._describe(image_id, error), exc_info=error)
        if count > self.epoch_images:
            raise RuntimeError(
                f"Most images of this epoch failed to load: {count} failed while the epoch needs "
                f"{self.epoch_images}. First error: {self.first}. Fix the dataset's load_image / load_mask "
                "(the log has the first failure's traceback)."
            ) from error

    def end_epoch(self):
        """Log the epoch's count of failed images (if any) in one line and start counting afresh."""
        with self._lock:
            count, first = self.count, self.first
            self.count, self.first = 0, None
        if count:
            logger.warning(
                "Skipped %d image%s this epoch because loading raised (the epoch used %d images); "
                "first error: %s",
                count,
                "" if count == 1 else "s",
                self.epoch_images,
                first,
            )


def _check_dataset(dataset, config):
    """Fail early on an unprepared or empty dataset and on more dataset classes than NUM_CLASSES."""
    if dataset.num_images == 0:
        raise ValueError("the dataset has no images; add images and call dataset.prepare()")
    if dataset.num_classes > config.NUM_CLASSES:
        raise ValueError(
            f"the dataset has {dataset.num_classes} classes (background included) but config.NUM_CLASSES is "
            f"{config.NUM_CLASSES}; set NUM_CLASSES = dataset.num_classes."
        )


def data_generator(
    dataset,
    config,
    shuffle=True,
    augment=False,
    augmentation=None,
    random_rois=0,
    batch_size=1,
    detection_targets=False,
    no_augmentation_sources=None,
):
    """Infinite generator of training batches ``(inputs, outputs)`` (Matterport's signature).

    inputs: [images float32 [B, H, W, C] (molded), image_meta float32 [B, 12 + NUM_CLASSES],
    rpn_match int32 [B, A, 1], rpn_bbox float32 [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4],
    gt_class_ids int32 [B, MAX_GT_INSTANCES], gt_boxes int32 [B, MAX_GT_INSTANCES, 4],
    gt_masks bool [B, h, w, MAX_GT_INSTANCES] (MINI_MASK_SHAPE, or the image size without mini masks)],
    then rpn_rois int32 [B, random_rois, 4] if random_rois, and rois int32 [B, TRAIN_ROIS_PER_IMAGE, 4]
    if detection_targets (which needs random_rois). outputs: [] unless detection_targets, then
    [class_ids int32 [B, T, 1], bbox float32 [B, T, NUM_CLASSES, 4], mask float32 [B, T, 28, 28, NUM_CLASSES]]

    Images without a positive class id are skipped; at most MAX_GT_INSTANCES instances are kept (random
    subset; the RPN targets use all); the order is reshuffled every pass. A failing image is logged
    (with its id) and skipped; MAX_CONSECUTIVE_FAILURES failures in a row raise RuntimeError.
    Images from ``no_augmentation_sources`` are not augmented. Randomness: numpy's global state.
    Deviation: image_meta and rpn_bbox are float32 (Matterport: float64), the model inputs' dtype. For
    ``keras.Model.fit`` use ``MaskRCNNSequence`` (tf.data would read these lists as single tensors).
    """
    _check_dataset(dataset, config)
    builder = _SampleBuilder(
        dataset, config, augment, augmentation, random_rois, detection_targets, no_augmentation_sources
    )
    tracker = _SkipTracker(dataset.num_images)
    image_ids = np.copy(dataset.image_ids)
    index = -1
    while True:
        samples = []
        while len(samples) < batch_size:
            index = (index + 1) % len(image_ids)
            if shuffle and index == 0:
                np.random.shuffle(image_ids)
            sample = tracker.attempt(builder, image_ids[index], resolve_rng(None))
            if sample is not None:
                samples.append(sample)
        yield builder.batch(samples)


class MaskRCNNSequence(keras.utils.PyDataset):
    """Training / validation input for ``keras.Model.fit``: the batches of ``data_generator``.

    ``seq[i]`` is ``(inputs,)`` (or ``(inputs, outputs)`` with detection_targets): inputs holds the arrays
    of data_generator as a tuple (tf.data, which ``fit`` uses, would take a list for one tensor), or a
    dict keyed by INPUT_NAMES (+ "input_roi" for random_rois) when ``as_dict``; outputs is a tuple.
    ``len(seq)`` is ``steps`` (default: enough batches to see every image once).

    Batch i of an epoch takes the images at positions i * batch_size, ... of the epoch's order (a seeded
    permutation when ``shuffle``, redrawn by ``on_epoch_end``), continuing along the order past skipped
    images. All its randomness comes from a Generator seeded with (seed, epoch, i), passed to mrcnn.augment
    augmenters, so batches are reproducible and independent of worker scheduling. In worker processes the
    global ``random`` / ``np.random`` state (used by resize "crop" mode and other augmenters) is reseeded
    per batch, so forked workers do not repeat each other. Other augmenters (imgaug, plain callables) use
    their own state.

    An image whose loading raises (e.g. a ``load_mask`` that fails on some annotations) is skipped: the
    first such error is logged with its traceback, and each epoch ends with one warning that counts the
    epoch's skipped images and names its first error. When more images fail than the epoch uses
    (``steps`` x ``batch_size``), i.e. most of the epoch's images, a RuntimeError stops the run; so do
    MAX_CONSECUTIVE_FAILURES failures in a row.

    Keyword arguments ``workers``, ``use_multiprocessing`` and ``max_queue_size`` go to PyDataset.
    """

    def __init__(
        self,
        dataset,
        config,
        shuffle=True,
        augment=False,
        augmentation=None,
        random_rois=0,
        batch_size=None,
        detection_targets=False,
        no_augmentation_sources=None,
        steps=None,
        as_dict=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_dataset(dataset, config)
        if as_dict and detection_targets:
            raise ValueError("detection_targets is a debugging output of the list form; use as_dict=False")
        self.batch_size = int(batch_size or config.BATCH_SIZE)
        self.steps = int(steps) if steps is not None else math.ceil(dataset.num_images / self.batch_size)
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        self.shuffle = bool(shuffle)
        self.as_dict = bool(as_dict)
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % (2**63))
        self.epoch = 0
        self._builder = _SampleBuilder(
            dataset, config, augment, augmentation, random_rois, detection_targets, no_augmentation_sources
        )
        self._image_ids = np.asarray(dataset.image_ids)
        self._order = self._epoch_order()
        self._owner_pid = os.getpid()
        self._failures = _EpochFailures(dataset, self.steps * self.batch_size)

    def _epoch_order(self):
        if not self.shuffle:
            return self._image_ids
        return np.random.default_rng([self.seed, self.epoch]).permutation(self._image_ids)

    def __len__(self):
        return self.steps

    def on_epoch_end(self):
        """Advance the epoch: a new image order and new random streams; log the count of images whose
        loading failed during the epoch (one line, naming the first error)."""
        self._failures.end_epoch()
        self.epoch += 1
        self._order = self._epoch_order()

    def __getitem__(self, index):
        if not 0 <= index < self.steps:
            raise IndexError(f"batch index {index} out of range for {self.steps} steps")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if os.getpid() != self._owner_pid:
            # mrcnn's own sampling draws from ``rng``; user augmentation callables and imgaug may draw from
            # the global generators, which a forked worker would otherwise share with its siblings.
            random.seed(int(rng.integers(2**63)))
            np.random.seed(int(rng.integers(2**32)))
        order = self._order
        tracker = _SkipTracker(len(order), self._failures)
        samples = []
        position = index * self.batch_size
        while len(samples) < self.batch_size:
            sample = tracker.attempt(self._builder, order[position % len(order)], rng)
            position += 1
            if sample is not None:
                samples.append(sample)
        inputs, outputs = self._builder.batch(samples)
        if self.as_dict:
            names = INPUT_NAMES + (("input_roi",) if self._builder.random_rois else ())
            inputs = dict(zip(names, inputs))
        else:
            inputs = tuple(inputs)  # tf.data (used by fit) treats a list as one tensor, not a structure
        return (inputs, tuple(outputs)) if outputs else (inputs,)
