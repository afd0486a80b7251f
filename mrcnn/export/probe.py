"""One run of a freshly converted model before it is renamed into place: the check every export makes."""

from __future__ import annotations

import numpy as np

OUTPUT_NAMES = ("boxes", "class_ids", "scores", "num_detections", "masks")
OUTPUT_DTYPES = {
    "boxes": np.float32,
    "class_ids": np.int32,
    "scores": np.float32,
    "num_detections": np.int32,
}


def probe_image(config) -> np.ndarray:
    """A grey uint8 image [1, S, S, C] the config accepts in every resize mode (S a multiple of 64)."""
    side = max(64, -(-int(config.IMAGE_MIN_DIM or 64) // 64) * 64)
    return np.full((1, side, side, int(config.IMAGE_CHANNEL_COUNT)), 128, np.uint8)


def check_outputs(outputs: dict, config, masks: str, runtime: str) -> None:
    """Raise RuntimeError naming ``runtime`` when ``outputs`` (name -> array) of one ``probe_image`` run
    lack a name or have the wrong dtype or shape."""
    missing = sorted(set(OUTPUT_NAMES) - set(outputs))
    if missing:
        raise RuntimeError(
            f"{runtime}: the converted model has no output(s) {missing}; got {sorted(outputs)}."
        )
    count = int(config.DETECTION_MAX_INSTANCES)
    side = probe_image(config).shape[1]
    mask_shape = (1, count, side, side) if masks == "full" else (1, count, *config.MASK_SHAPE)
    expected = {
        "boxes": (1, count, 4),
        "class_ids": (1, count),
        "scores": (1, count),
        "num_detections": (1,),
        "masks": mask_shape,
    }
    dtypes = dict(OUTPUT_DTYPES, masks=np.uint8 if masks == "full" else np.float32)
    for name, shape in expected.items():
        value = np.asarray(outputs[name])
        if value.shape != shape or value.dtype != dtypes[name]:
            raise RuntimeError(
                f"{runtime}: output {name!r} is {value.dtype} {value.shape}, expected "
                f"{np.dtype(dtypes[name])} {shape}; the conversion changed the model."
            )
