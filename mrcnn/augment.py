"""Mask-aware data augmentation without imgaug.

Every augmenter is a callable ``aug(image, masks) -> (image, masks)``:

* ``image``: [H, W] or [H, W, C] array of any dtype; the output has the same dtype (uint8 in, uint8 out).
* ``masks``: [H, W, N] instance masks (any dtype, nonzero = inside); the output is bool [H, W, N].

Spatial augmenters move the image and every mask with the same transform, so boxes recomputed from the
masks (``boxes.extract_bboxes``) stay consistent with the image. The number of instances never changes:
an instance pushed out of the frame keeps an empty mask (``load_image_gt`` drops those). All augmenters
keep the image size, which ``load_image_gt`` requires.

Randomness: each augmenter takes ``rng`` at construction (a ``numpy.random.Generator``, an int seed, or
None for fresh entropy). A call may pass ``rng=`` to override it for that call; containers pass their
generator on to their children, so one generator given to the outer augmenter makes the whole chain
reproducible (the input pipeline uses this to give each sample its own stream).

Example::

    from mrcnn import augment
    aug = augment.Sequential([
        augment.Fliplr(0.5),
        augment.Sometimes(0.5, augment.ScaleCrop((0.8, 1.2))),
        augment.OneOf([augment.Rot90(1.0), augment.BrightnessContrast()]),
    ], rng=42)
    image, masks = aug(image, masks)
"""

import numpy as np
import skimage.transform

__all__ = [
    "Augmenter",
    "Fliplr",
    "Flipud",
    "Rot90",
    "ScaleCrop",
    "BrightnessContrast",
    "Sometimes",
    "Sequential",
    "OneOf",
]


def _check_probability(p, name="p"):
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_range(value, name, low_limit=None):
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if low > high:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    if low_limit is not None and low <= low_limit:
        raise ValueError(f"{name} values must be > {low_limit}, got {value!r}")
    return low, high


def _check_inputs(image, masks):
    """Validate and normalize (image, masks); returns (ndarray image, bool [H, W, N] masks)."""
    image = np.asarray(image)
    masks = np.asarray(masks)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {image.shape}")
    if masks.ndim != 3:
        raise ValueError(f"masks must be [H, W, N] (one channel per instance), got shape {masks.shape}")
    if masks.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"masks {masks.shape} and image {image.shape} differ in height/width; masks must be [H, W, N] "
            "for an [H, W, C] image"
        )
    return image, masks.astype(bool, copy=False)


class Augmenter:
    """Base class: subclasses implement ``_apply(image, masks, rng)`` on validated inputs.

    Call as ``aug(image, masks, rng=None)``; see the module docstring for shapes and dtypes.
    """

    def __init__(self, rng=None):
        self.rng = np.random.default_rng(rng)

    def __call__(self, image, masks, rng=None):
        image, masks = _check_inputs(image, masks)
        return self._apply(image, masks, self.rng if rng is None else rng)

    def _apply(self, image, masks, rng):
        raise NotImplementedError(f"{type(self).__name__} must implement _apply(image, masks, rng)")

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng")
        return f"{type(self).__name__}({params})"


class Fliplr(Augmenter):
    """Mirror left-right with probability ``p``."""

    def __init__(self, p=0.5, rng=None):
        super().__init__(rng)
        self.p = _check_probability(p)

    def _apply(self, image, masks, rng):
        if rng.random() < self.p:
            return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(masks[:, ::-1])
        return image, masks


class Flipud(Augmenter):
    """Mirror top-bottom with probability ``p``."""

    def __init__(self, p=0.5, rng=None):
        super().__init__(rng)
        self.p = _check_probability(p)

    def _apply(self, image, masks, rng):
        if rng.random() < self.p:
            return np.ascontiguousarray(image[::-1]), np.ascontiguousarray(masks[::-1])
        return image, masks


class Rot90(Augmenter):
    """With probability ``p``, rotate counter-clockwise by k * 90 degrees, k drawn from ``k``.

    A quarter turn swaps height and width, so on non-square images only the even k of ``k`` are drawn
    (no rotation when there is none): the output always has the input's size.
    """

    def __init__(self, p=0.5, k=(1, 2, 3), rng=None):
        super().__init__(rng)
        self.p = _check_probability(p)
        self.k = tuple(int(v) % 4 for v in k)
        if not self.k:
            raise ValueError("k must list at least one multiple of 90 degrees, e.g. k=(1, 2, 3)")

    def _apply(self, image, masks, rng):
        if rng.random() >= self.p:
            return image, masks
        choices = self.k if image.shape[0] == image.shape[1] else tuple(v for v in self.k if v % 2 == 0)
        if not choices:
            return image, masks
        k = choices[rng.integers(len(choices))]
        return (
            np.ascontiguousarray(np.rot90(image, k, axes=(0, 1))),
            np.ascontiguousarray(np.rot90(masks, k, axes=(0, 1))),
        )


def _nearest_indices(out_size, in_size):
    """Source index of each output pixel for a nearest-neighbour resize (pixel-centre aligned)."""
    positions = (np.arange(out_size) + 0.5) * (in_size / out_size)
    return np.minimum(positions.astype(np.int64), in_size - 1)


class ScaleCrop(Augmenter):
    """Zoom by a factor drawn uniformly from ``scale``, then crop or pad back to the original size.

    The image is resized bilinearly (rounded and clipped back to its dtype), masks by nearest neighbour
    with the same pixel-centre alignment. When zooming in, a random window of the original size is cut
    out; when zooming out, the result is placed at a random offset on a ``cval`` background (masks
    False). Parts of instances outside the crop are lost; fully cut instances keep an empty mask.
    """

    def __init__(self, scale=(0.8, 1.2), cval=0, rng=None):
        super().__init__(rng)
        self.scale = _check_range(scale, "scale", low_limit=0.0)
        self.cval = cval

    def _apply(self, image, masks, rng):
        height, width = image.shape[:2]
        factor = rng.uniform(*self.scale)
        new_h = max(1, int(round(height * factor)))
        new_w = max(1, int(round(width * factor)))
        if (new_h, new_w) == (height, width):
            return image, masks
        resized = skimage.transform.resize(
            image.astype(np.float64),
            (new_h, new_w) + image.shape[2:],
            order=1,
            mode="edge",
            preserve_range=True,
            anti_aliasing=False,
        )
        resized = _cast_to(resized, image.dtype)
        rows = _nearest_indices(new_h, height)
        cols = _nearest_indices(new_w, width)
        resized_masks = masks[rows[:, None], cols[None, :]]
        out_image = np.full(image.shape, self.cval, dtype=image.dtype)
        out_masks = np.zeros(masks.shape, dtype=bool)
        # Along each axis either crop (resized larger) or pad (resized smaller) at a random offset.
        src_y, dst_y, span_y = _placement(new_h, height, rng)
        src_x, dst_x, span_x = _placement(new_w, width, rng)
        out_image[dst_y : dst_y + span_y, dst_x : dst_x + span_x] = resized[
            src_y : src_y + span_y, src_x : src_x + span_x
        ]
        out_masks[dst_y : dst_y + span_y, dst_x : dst_x + span_x] = resized_masks[
            src_y : src_y + span_y, src_x : src_x + span_x
        ]
        return out_image, out_masks


def _placement(resized, original, rng):
    """(source offset, destination offset, span) placing ``resized`` pixels into ``original`` pixels."""
    if resized >= original:
        return int(rng.integers(resized - original + 1)), 0, original
    return 0, int(rng.integers(original - resized + 1)), resized


def _cast_to(values, dtype):
    """Float values back to ``dtype``: integer types are rounded and clipped to their range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    elif np.dtype(dtype) == np.bool_:
        values = values >= 0.5
    return values.astype(dtype)


class BrightnessContrast(Augmenter):
    """Image-only photometric change: ``(x - mean) * c + mean + b``; masks are returned unchanged.

    b is drawn uniformly from ``brightness`` (pixel units, e.g. (-25, 25) on a 0..255 image), c from
    ``contrast`` (a factor; 1 = unchanged); mean is the image's per-channel mean. Integer images are
    rounded and clipped to their dtype's range.
    """

    def __init__(self, brightness=(-25.0, 25.0), contrast=(0.8, 1.2), rng=None):
        super().__init__(rng)
        self.brightness = _check_range(brightness, "brightness")
        self.contrast = _check_range(contrast, "contrast")
        if self.contrast[0] < 0:
            raise ValueError(f"contrast factors must be >= 0, got {contrast!r}")

    def _apply(self, image, masks, rng):
        offset = rng.uniform(*self.brightness)
        factor = rng.uniform(*self.contrast)
        values = image.astype(np.float64)
        mean = values.mean(axis=(0, 1), keepdims=True)
        return _cast_to((values - mean) * factor + mean + offset, image.dtype), masks


def _check_augmenters(augmenters, name):
    augmenters = list(augmenters)
    for aug in augmenters:
        if not callable(aug):
            raise TypeError(f"{name} expects callables (image, masks) -> (image, masks), got {aug!r}")
    return augmenters


def _call_child(aug, image, masks, rng):
    """Run a child augmenter, passing the container's generator to mrcnn augmenters."""
    if isinstance(aug, Augmenter):
        return aug(image, masks, rng=rng)
    return _check_inputs(*aug(image, masks))


class Sometimes(Augmenter):
    """Apply ``aug`` with probability ``p``, otherwise return the inputs unchanged."""

    def __init__(self, p, aug, rng=None):
        super().__init__(rng)
        self.p = _check_probability(p)
        self.aug = _check_augmenters([aug], "Sometimes")[0]

    def _apply(self, image, masks, rng):
        if rng.random() < self.p:
            return _call_child(self.aug, image, masks, rng)
        return image, masks


class Sequential(Augmenter):
    """Apply every augmenter in turn (in a fresh random order per call when ``random_order``)."""

    def __init__(self, augmenters, random_order=False, rng=None):
        super().__init__(rng)
        self.augmenters = _check_augmenters(augmenters, "Sequential")
        self.random_order = bool(random_order)

    def _apply(self, image, masks, rng):
        order = rng.permutation(len(self.augmenters)) if self.random_order else range(len(self.augmenters))
        for i in order:
            image, masks = _call_child(self.augmenters[i], image, masks, rng)
        return image, masks


class OneOf(Augmenter):
    """Apply exactly one augmenter, chosen uniformly at random per call."""

    def __init__(self, augmenters, rng=None):
        super().__init__(rng)
        self.augmenters = _check_augmenters(augmenters, "OneOf")
        if not self.augmenters:
            raise ValueError("OneOf needs at least one augmenter")

    def _apply(self, image, masks, rng):
        aug = self.augmenters[rng.integers(len(self.augmenters))]
        return _call_child(aug, image, masks, rng)
