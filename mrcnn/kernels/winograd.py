"""3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3), for float32 on CPU.

A 3x3, stride-1, 'same' convolution spends 9 multiply-adds per output value and input channel. Winograd's
F(2x2, 3x3) computes each 2x2 block of outputs from the 4x4 input tile around it with 16 (instead of 36):
the tile and the kernel are mapped into a 16-point "Winograd domain" (``V = B^T d B``, ``U = G g G^T``),
multiplied point by point and summed over the input channels (16 independent [tiles, C] x [C, K] matrix
products), and mapped back (``Y = A^T M A``). The result equals the direct convolution up to float32
rounding (relative error about 2e-6). The 16 matrix products run in oneDNN; the tile transforms are
short chains of additions, compiled with XLA (``jit_compile``) so that each transform is one pass over
memory, with hand-written adjoints for the backward pass. Measurements against oneDNN's direct
convolution, and why F(4x4, 3x3) is not used, are in benchmarks/README.md.

``fits(layer)`` says whether a Conv2D's configuration is one this computes (3x3, stride 1, 'same',
float32); ``mrcnn.kernels.select`` decides when it is used.

XLA compiles one program per input shape. Where the batch size is dynamic (the RoI count of the mask
head changes every training step), batches above 8 are padded with zeros to a multiple of 4, so a
training run compiles a dozen programs (about a second each) rather than one per RoI count.
"""

import numpy as np
import tensorflow as tf

# Kernel transform G (4x3) of F(2x2, 3x3); the input and output transforms are written out below.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], np.float32)
# G g G^T for all 16 points at once: row 4u + v, column 3a + b holds G[u, a] * G[v, b].
_G_KRON = np.kron(_G, _G)


def fits(layer) -> bool:
    """True when ``layer`` (a Keras Conv2D) is a convolution ``winograd_conv3x3`` computes: a 3x3 kernel,
    stride 1, 'same' padding, no dilation or groups, channels-last, float32 compute dtype."""
    return (
        tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.strides) == (1, 1)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.compute_dtype == "float32"
    )


def _bt(d0, d1, d2, d3):
    """B^T along one axis: 4 input rows of a tile -> 4 Winograd-domain rows."""
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _b(v0, v1, v2, v3):
    """B (the adjoint of ``_bt``): 4 Winograd-domain rows -> gradients of the 4 input rows."""
    return [v0, v1 - v2 + v3, v1 + v2 - v0, -v3]


def _at(m0, m1, m2, m3):
    """A^T along one axis: 4 Winograd-domain rows -> the 2 output rows of a tile."""
    return [m0 + m1 + m2, m1 - m2 - m3]


def _a(y0, y1):
    """A (the adjoint of ``_at``): gradients of 2 output rows -> gradients of 4 Winograd-domain rows."""
    return [y0, y0 + y1, y0 - y1, -y1]


def _split_pairs(tensor, axis):
    """Split an axis of even size 2t into [t, 2] (entries 2i and 2i + 1 side by side)."""
    shape = tf.unstack(tf.shape(tensor))
    return tf.reshape(tensor, shape[:axis] + [shape[axis] // 2, 2] + shape[axis + 1 :])


def _interleave(even, odd, axis):
    """Inverse of ``_split_pairs``: entry 2i from ``even[i]``, entry 2i + 1 from ``odd[i]``."""
    stacked = tf.stack([even, odd], axis + 1)
    shape = tf.unstack(tf.shape(even))
    return tf.reshape(stacked, shape[:axis] + [2 * shape[axis]] + shape[axis + 1 :])


# The Winograd domain is kept as 16 separate tensors, point 4u + v holding (B^T d B)[u, v] of every tile:
# XLA writes each of them in one fused pass, where one stacked [16, ...] output ran about 3x slower (its
# concatenation), and each point's matrix product reads its own tensor.


@tf.function(jit_compile=True, reduce_retracing=True)
def _input_transform(x):
    """[N, H, W, C] -> 16 tensors [N, ceil(H/2), ceil(W/2), C]: V = B^T d B of every 4x4 tile (stride 2).

    The input is zero-padded by 1 on the top and left (the 'same' padding) and by 1 or 2 on the bottom
    and right, to 2 * tiles + 2 rows and columns.
    """
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    tiles_h, tiles_w = (height + 1) // 2, (width + 1) // 2
    padded = tf.pad(x, [[0, 0], [1, 2 * tiles_h + 1 - height], [1, 2 * tiles_w + 1 - width], [0, 0]])
    rows = _split_pairs(padded, 1)  # [N, th + 1, 2, W', C]
    by_row = _bt(rows[:, :-1, 0], rows[:, :-1, 1], rows[:, 1:, 0], rows[:, 1:, 1])
    domain = []
    for row in by_row:
        cols = _split_pairs(row, 2)  # [N, th, tw + 1, 2, C]
        domain += _bt(cols[:, :, :-1, 0], cols[:, :, :-1, 1], cols[:, :, 1:, 0], cols[:, :, 1:, 1])
    return domain


def _overlap_add(offsets, axis):
    """Sum 4 tile-row gradients (tile i's row r lands on row 2i + r) -> [.., 2 * tiles + 2, ..]."""
    rank = len(offsets[0].shape)
    after = [[0, 0]] * rank
    after[axis] = [0, 1]
    before = [[0, 0]] * rank
    before[axis] = [1, 0]
    even = tf.pad(offsets[0], after) + tf.pad(offsets[2], before)
    odd = tf.pad(offsets[1], after) + tf.pad(offsets[3], before)
    return _interleave(even, odd, axis)


@tf.function(jit_compile=True, reduce_retracing=True)
def _input_transform_grad(*grad_domain):
    """Adjoint of ``_input_transform`` before its padding: 16 x [N, th, tw, C] -> [N, 2th + 2, 2tw + 2, C]."""
    rows = []
    for u in range(4):
        rows.append(_overlap_add(_b(*[grad_domain[4 * u + v] for v in range(4)]), axis=2))
    return _overlap_add(_b(*rows), axis=1)


@tf.function(jit_compile=True, reduce_retracing=True)
def _output_transform(*domain):
    """16 x [N, th, tw, K] -> [N, 2th, 2tw, K]: Y = A^T M A of every tile, tiles laid side by side."""
    # by_column[v][k] = (A^T M)[k, v]; then Y[k, l] = sum_v A^T[l, v] (A^T M)[k, v].
    by_column = [_at(*[domain[4 * u + v] for u in range(4)]) for v in range(4)]
    rows = [_interleave(*_at(*[by_column[v][k] for v in range(4)]), axis=2) for k in range(2)]
    return _interleave(rows[0], rows[1], axis=1)


@tf.function(jit_compile=True, reduce_retracing=True)
def _output_transform_grad(grad_outputs):
    """Adjoint of ``_output_transform``: [N, 2th, 2tw, K] -> 16 x [N, th, tw, K]."""
    rows = _split_pairs(grad_outputs, 1)
    domain = []
    for row in _a(rows[:, :, 0], rows[:, :, 1]):
        cols = _split_pairs(row, 2)
        domain += _a(cols[:, :, :, 0], cols[:, :, :, 1])
    return domain


@tf.custom_gradient
def _to_domain(x):
    """``_input_transform`` with its hand-written adjoint as the gradient."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]

    def grad(*grad_domain):
        return _input_transform_grad(*grad_domain)[:, 1 : height + 1, 1 : width + 1]

    return _input_transform(x), grad


@tf.custom_gradient
def _from_domain(*domain):
    """``_output_transform`` with its hand-written adjoint as the gradient."""
    return _output_transform(*domain), _output_transform_grad


def kernel_transform(kernel):
    """[3, 3, C, K] -> [16, C, K]: U = G g G^T for every (input, output) channel pair."""
    channels, filters = kernel.shape[2], kernel.shape[3]
    # One [16, 9] x [9, C * K] matmul (an einsum over the kernel's axes runs ~20x slower in oneDNN).
    transformed = tf.matmul(_G_KRON, tf.reshape(kernel, [9, channels * filters]))
    return tf.reshape(transformed, [16, channels, filters])


def _batch_bucket(size):
    """Sizes above 8 rounded up to a multiple of 4 (fewer distinct shapes for XLA to compile)."""
    return tf.where(size > 8, (size + 3) // 4 * 4, size)


def winograd_conv3x3(inputs, kernel):
    """``tf.nn.conv2d(inputs, kernel, 1, 'SAME')`` computed by F(2x2, 3x3), differentiable.

    inputs: [N, H, W, C] float32 (any H, W >= 1); kernel: [3, 3, C, K] float32. Returns [N, H, W, K].
    """
    batch, height, width = tf.shape(inputs)[0], tf.shape(inputs)[1], tf.shape(inputs)[2]
    channels, filters = kernel.shape[2], kernel.shape[3]
    static_shape = inputs.shape[:3].concatenate([filters])
    dynamic_batch = inputs.shape[0] is None
    if dynamic_batch:
        inputs = tf.pad(inputs, [[0, _batch_bucket(batch) - batch], [0, 0], [0, 0], [0, 0]])
    domain = _to_domain(inputs)  # 16 x [N', th, tw, C]
    tile_shape = tf.concat([tf.shape(domain[0])[:3], [filters]], 0)
    products = [
        tf.reshape(tf.matmul(tf.reshape(point, [-1, channels]), point_kernel), tile_shape)
        for point, point_kernel in zip(domain, tf.unstack(kernel_transform(kernel)))
    ]
    outputs = _from_domain(*products)  # [N', 2th, 2tw, K]
    odd_or_unknown = [size is None or size % 2 == 1 for size in inputs.shape[1:3]]
    if dynamic_batch or any(odd_or_unknown):
        # tf.slice, not outputs[:batch, ...]: StridedSlice's gradient kernel is ~30x slower than Slice's.
        outputs = tf.slice(outputs, [0, 0, 0, 0], tf.stack([batch, height, width, -1]))
    return tf.ensure_shape(outputs, static_shape)  # the XLA functions' traces leave shapes unknown
