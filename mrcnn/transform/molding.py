"""Molding: raw images -> the network's input (resized, padded, MEAN_PIXEL subtracted) and image metas.

``mold_inputs`` (numpy, used by ``MaskRCNN.detect``) and ``mold_images_graph`` (TensorFlow, used by the
exported models) give the same molded pixels, metas and windows; both are built on ``resizing`` and
``image_meta``. ``check_image`` / ``check_pixels`` reject inputs that would give garbage.
"""

from __future__ import annotations

import numpy as np

from mrcnn.transform._lazy import tf
from mrcnn.transform.image_meta import compose_image_meta, compose_image_meta_graph
from mrcnn.transform.resizing import resize_and_pad_graph, resize_image_for


def check_pixels(images, config, what: str = "image") -> np.ndarray:
    """Raise if the pixels of ``images`` ([..., C] array) cannot be what the network expects.

    TypeError for bool or non-numeric dtypes. ValueError for NaN or infinite values and, when
    ``config.MEAN_PIXEL`` is on the 0..255 scale (any mean > 1, as the default), for pixels outside
    0..255 (16-bit images), for float images whose values all lie in [0, 1] (scaled to 0..1) and for
    negative float pixels (already molded images). uint8 images pass without a scan. ``what`` names the
    image in the message. Returns the images as an array.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if (
        images.dtype == bool
        or not np.issubdtype(images.dtype, np.number)
        or np.issubdtype(images.dtype, np.complexfloating)
    ):
        raise TypeError(f"{what} has dtype {images.dtype}; give uint8 (0..255) or float pixels.")
    if images.size == 0:
        return images
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        raise ValueError(f"{what} contains NaN or infinite pixels; fix or drop the image.")
    if np.max(np.asarray(config.MEAN_PIXEL)) <= 1:
        return images
    low, high = images.min(), images.max()
    if np.issubdtype(images.dtype, np.integer) and (low < 0 or high > 255):
        raise ValueError(
            f"{what} has {images.dtype} pixels in {low}..{high}, outside 0..255 (the scale of MEAN_PIXEL); "
            "convert to uint8 first, e.g. (image // 257).astype(np.uint8) for 16-bit images."
        )
    if np.issubdtype(images.dtype, np.floating):
        if low < -1 or high > 256:
            raise ValueError(
                f"{what} has float pixels in {low:.4g}..{high:.4g}, outside 0..255 (the scale of "
                "MEAN_PIXEL); give raw pixels (not images already molded with mold_image) in 0..255."
            )
        if 0 < high <= 1:
            raise ValueError(
                f"{what} has float pixels in {low:.4g}..{high:.4g}: it looks scaled to 0..1 but MEAN_PIXEL "
                "is on the 0..255 scale; multiply by 255 (or set MEAN_PIXEL to your pixel scale)."
            )
    return images


def check_image(image, config, index: int) -> np.ndarray:
    """Validate one ``detect()`` input image; grayscale / RGBA become RGB when the model expects 3 channels.

    Returns the (possibly converted) [H, W, IMAGE_CHANNEL_COUNT] array; raises TypeError / ValueError
    naming image ``index`` for non-arrays, wrong shapes, empty images, non-numeric dtypes and NaN pixels.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"Image {index} is a {type(image).__name__}; give a numpy array [H, W, C].")
    channels = int(config.IMAGE_CHANNEL_COUNT)
    if image.ndim == 2 and channels == 3:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 4 and channels == 3:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[-1] != channels:
        raise ValueError(
            f"Image {index} has shape {image.shape}; the model expects [H, W, {channels}] "
            f"(IMAGE_CHANNEL_COUNT={channels})."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"Image {index} is empty (shape {image.shape}).")
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise TypeError(f"Image {index} has dtype {image.dtype}; give uint8 (0..255) or float pixels.")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise ValueError(f"Image {index} contains NaN or infinite pixels.")
    return image


def as_image_list(images) -> list:
    """``detect()``'s images argument as a list: a list/tuple or a 4-D array [N, H, W, C]."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("detect() takes a list of images; wrap a single image as [image].")
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"detect() takes a list of images ([H, W, C] arrays), got {type(images).__name__}.")
    if not images:
        raise ValueError("detect() was given no images.")
    return list(images)


def mold_image(images, config) -> np.ndarray:
    """Subtract ``config.MEAN_PIXEL``: images [..., C] of any dtype -> float32 [..., C].

    The pixels are checked first with ``check_pixels`` (ValueError / TypeError for NaN, 16-bit, 0..1
    float or already molded images). Fix: Matterport's result is float64 (its MEAN_PIXEL is float64);
    this one is float32, the graph's dtype.
    """
    images = check_pixels(images, config, "mold_image input")
    return np.asarray(images, dtype=np.float32) - np.asarray(config.MEAN_PIXEL, dtype=np.float32)


def unmold_image(normalized_images, config) -> np.ndarray:
    """Inverse of ``mold_image``: add ``config.MEAN_PIXEL`` and return uint8.

    Fix: values are rounded and clipped to 0..255 (Matterport truncates, so x -> mold -> unmold could give
    x - 1, and out-of-range values wrapped around).
    """
    images = np.asarray(normalized_images, dtype=np.float32) + np.asarray(config.MEAN_PIXEL, dtype=np.float32)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def mold_mask(mask, config) -> None:
    """Matterport's ``utils.mold_mask``: a placeholder there (a TODO stub that does nothing and returns
    None), kept with the same behaviour so scripts that import or call it run. Masks are resized with
    ``resize_mask`` and cropped to their boxes with ``minimize_mask``."""
    return None


def mold_inputs(images, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize, pad and normalize images for the graph (``MaskRCNN.mold_inputs``).

    images: list of [H, W, C] arrays of the same molded size. Returns (molded_images float32
    [N, h, w, C], image_metas float32 [N, IMAGE_META_SIZE] (image id 0, no active classes), windows int32
    [N, 4] (y1, x1, y2, x2) pixels of each resized image inside its molded image, y2/x2 exclusive).
    """
    molded_images, image_metas, windows = [], [], []
    for image in images:
        molded, window, scale, _, _ = resize_image_for(image, config)
        molded = mold_image(molded, config)
        no_classes = np.zeros([config.NUM_CLASSES], dtype=np.int32)
        image_metas.append(compose_image_meta(0, image.shape, molded.shape, window, scale, no_classes))
        molded_images.append(molded)
        windows.append(window)
    return (
        np.stack(molded_images).astype(np.float32),
        np.stack(image_metas).astype(np.float32),
        np.stack(windows).astype(np.int32),
    )


def mold_images_graph(images, config, dtype=None):
    """``mold_inputs`` for a batch of same-size uint8 images [B, H, W, C], in TensorFlow.

    dtype: the resize arithmetic's (``resize_and_pad_graph``; float64 by default). Returns (molded float32
    [B, h, w, C], metas float32 [B, IMAGE_META_SIZE] (image id 0, no active classes), window int32 [4]
    (y1, x1, y2, x2) pixels of the resized image in the molded one, y2/x2 exclusive; the same for every
    image of the batch).
    """
    shape = tf.shape(images)
    pixels, window, scale = resize_and_pad_graph(images, config, dtype)
    molded = pixels - tf.constant(np.asarray(config.MEAN_PIXEL, dtype=np.float32).reshape(-1))
    molded_shape = tf.shape(molded)
    meta = compose_image_meta_graph(
        0,
        shape[1:4],
        tf.stack([molded_shape[1], molded_shape[2], shape[3]]),
        window,
        scale,
        tf.zeros([int(config.NUM_CLASSES)]),
    )
    return molded, tf.tile(meta[None], [shape[0], 1]), window
