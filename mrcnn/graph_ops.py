"""Generic TensorFlow helpers used inside the graph's custom layers, and their float32 base layer.

The helpers operate on tf.Tensors (never on KerasTensors): call them from a Layer's ``call``. The box
ops (IoU, deltas, clipping, normalization) live in ``mrcnn.boxes``.
"""

import keras
import numpy as np
import tensorflow as tf


class Float32Layer(keras.layers.Layer):
    """Base of the graph layers that must compute in float32 whatever the dtype policy.

    Anchors, proposals (top-k, delta decoding, NMS), detection targets, detections and the losses need
    float32: a bfloat16 box has 8 bits of mantissa, about 4 px at 1024 px. Under a mixed precision
    policy (``Config.MIXED_PRECISION``) these layers still get the "float32" policy, so their floating
    inputs are cast to float32 and their outputs are float32. An explicit ``dtype=`` still wins.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)


def log2_graph(x):
    """Base-2 logarithm."""
    return tf.math.log(x) / tf.math.log(tf.constant(2.0, dtype=x.dtype))


def trim_zeros_graph(boxes, name="trim_zeros"):
    """Drop all-zero rows of boxes [N, 4]. Returns (trimmed boxes [M, 4], bool mask [N] of kept rows)."""
    non_zeros = tf.cast(tf.reduce_sum(tf.abs(boxes), axis=1), tf.bool)
    return tf.boolean_mask(boxes, non_zeros, name=name), non_zeros


def batch_pack_graph(x, counts, num_rows):
    """Concatenate the first ``counts[i]`` rows of ``x[i]`` for i < num_rows. x: [B, N, ...]."""
    return tf.concat([x[i, : counts[i]] for i in range(num_rows)], axis=0)


def shape_list(tensor):
    """The shape of ``tensor`` as a list: the static size where known, a scalar int32 tensor elsewhere."""
    dynamic = tf.shape(tensor)
    return [size if size is not None else dynamic[i] for i, size in enumerate(tensor.shape)]


def batch_slice(inputs, graph_fn, batch_size: int, names=None):
    """Run ``graph_fn`` on each batch item and stack the results.

    inputs: a tensor or list of tensors sharing batch dimension ``batch_size``; graph_fn returns a tensor
    or a list/tuple of tensors per item. Returns the stacked tensor(s) ([batch_size, ...]); a single output
    is returned unwrapped. ``names`` name the stacked outputs.
    """
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    per_item = []
    for i in range(batch_size):
        result = graph_fn(*[x[i] for x in inputs])
        if not isinstance(result, (list, tuple)):
            result = [result]
        per_item.append(result)
    columns = list(zip(*per_item))
    if names is None:
        names = [None] * len(columns)
    stacked = [tf.stack(column, axis=0, name=name) for column, name in zip(columns, names)]
    return stacked[0] if len(stacked) == 1 else stacked


def layer_settings(layer_name: str, config, **values) -> dict:
    """The settings of a graph layer built "from a Config or from explicit values" (Matterport's layers
    take ``config=``; ``get_config`` stores the values): each value given, else ``config.<NAME>``.

    Raises ValueError naming the layer and the settings that are missing when neither gives one.
    """
    if config is not None:
        values = {
            key: getattr(config, key.upper()) if value is None else value for key, value in values.items()
        }
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise ValueError(f"{layer_name} needs config=your Config, or the values {missing}.")
    return values


def std_dev_list(name: str, value) -> list[float]:
    """A (dy, dx, dh, dw) standard deviation setting as 4 floats; ValueError naming ``name`` otherwise."""
    values = [float(v) for v in np.asarray(value).reshape(-1)]
    if len(values) != 4:
        raise ValueError(f"{name} needs 4 values (dy, dx, dh, dw); got {values}.")
    return values
