"""3x3 convolutions by Winograd's F(4x4, 3x3), forward only (inference), for float32 on CPU.

F(2x2, 3x3) (``winograd``) spends 16 multiplies per 2x2 output block, 4 per output; F(4x4, 3x3) computes
each 4x4 output block from the 6x6 input tile around it with 36, 2.25 per output: 1.78x fewer
multiply-adds in the 36 [tiles, C] x [C, K] matrix products, which is what large inference maps (the
backbones, FPN and RPN at 1024 px) spend their time on. Its transforms use the points 0, +-1, +-2 and
infinity, so rounding grows: outputs differ from the direct convolution by about 1e-5 relative (against
2e-6 for F(2x2, 3x3)), within float32 inference noise. The transforms are XLA-compiled like
``winograd``'s; no hand-written gradient, so ``mrcnn.kernels.select`` uses it only where no gradient is
recorded, and only where it measured faster.
"""

import numpy as np
import tensorflow as tf

# Kernel transform G (6x3) of F(4x4, 3x3); the input (B^T) and output (A^T) transforms are written out.
_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    np.float32,
)
# G g G^T for all 36 points at once: row 6u + v, column 3a + b holds G[u, a] * G[v, b].
_G_KRON = np.kron(_G, _G)


def _bt(d0, d1, d2, d3, d4, d5):
    """B^T along one axis: 6 input rows of a tile -> 6 Winograd-domain rows."""
    return [
        4 * d0 - 5 * d2 + d4,
        d4 + d3 - 4 * (d1 + d2),
        d4 - d3 + 4 * (d1 - d2),
        d4 - d2 + 2 * (d3 - d1),
        d4 - d2 - 2 * (d3 - d1),
        4 * d1 - 5 * d3 + d5,
    ]


def _at(m0, m1, m2, m3, m4, m5):
    """A^T along one axis: 6 Winograd-domain rows -> the 4 output rows of a tile."""
    plus, minus = m1 + m2, m1 - m2
    plus2, minus2 = m3 + m4, m3 - m4
    return [m0 + plus + plus2, minus + 2 * minus2, plus + 4 * plus2, minus + 8 * minus2 + m5]


def _tile_rows(padded, axis):
    """Rows 4t + r (r = 0..5) of every tile t along ``axis`` of a tensor with 4 * (tiles + 1) entries there:
    6 tensors with ``tiles`` entries on that axis."""
    shape = tf.unstack(tf.shape(padded))
    blocks = tf.reshape(padded, shape[:axis] + [shape[axis] // 4, 4] + shape[axis + 1 :])
    index = [slice(None)] * (axis + 2)
    rows = []
    for r in range(6):
        block, offset = divmod(r, 4)
        index[axis] = slice(block, None) if block else slice(None, -1)
        index[axis + 1] = offset
        rows.append(blocks[tuple(index)])
    return rows


@tf.function(jit_compile=True, reduce_retracing=True)
def _input_transform(x):
    """[N, H, W, C] -> 36 tensors [N, ceil(H/4), ceil(W/4), C]: V = B^T d B of every 6x6 tile (stride 4).

    The input is zero-padded by 1 on the top and left (the 'same' padding) and on the bottom and right to
    4 * (tiles + 1) rows and columns (the last tile reads at most 4 * tiles + 2 of them).
    """
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    tiles_h, tiles_w = (height + 3) // 4, (width + 3) // 4
    padded = tf.pad(x, [[0, 0], [1, 4 * tiles_h + 3 - height], [1, 4 * tiles_w + 3 - width], [0, 0]])
    domain = []
    for row in _bt(*_tile_rows(padded, 1)):
        domain += _bt(*_tile_rows(row, 2))
    return domain


@tf.function(jit_compile=True, reduce_retracing=True)
def _output_transform(*domain):
    """36 x [N, th, tw, K] -> [N, 4th, 4tw, K]: Y = A^T M A of every tile, tiles laid side by side."""
    by_column = [_at(*[domain[6 * u + v] for u in range(6)]) for v in range(6)]  # [v][k]
    rows = []
    for k in range(4):
        outputs = _at(*[by_column[v][k] for v in range(6)])  # 4 x [N, th, tw, K], column l of each tile
        stacked = tf.stack(outputs, axis=3)  # [N, th, tw, 4, K]
        shape = tf.shape(stacked)
        rows.append(tf.reshape(stacked, [shape[0], shape[1], shape[2] * 4, shape[4]]))
    stacked = tf.stack(rows, axis=2)  # [N, th, 4, 4tw, K]
    shape = tf.shape(stacked)
    return tf.reshape(stacked, [shape[0], shape[1] * 4, shape[3], shape[4]])


def kernel_transform(kernel):
    """[3, 3, C, K] -> [36, C, K]: U = G g G^T for every (input, output) channel pair."""
    channels, filters = kernel.shape[2], kernel.shape[3]
    transformed = tf.matmul(_G_KRON, tf.reshape(kernel, [9, channels * filters]))
    return tf.reshape(transformed, [36, channels, filters])


def winograd_conv3x3_f4(inputs, kernel):
    """``tf.nn.conv2d(inputs, kernel, 1, 'SAME')`` computed by F(4x4, 3x3) (forward only).

    inputs: [N, H, W, C] float32 (any H, W >= 1); kernel: [3, 3, C, K] float32. Returns [N, H, W, K].
    """
    height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
    channels, filters = kernel.shape[2], kernel.shape[3]
    static_shape = inputs.shape[:3].concatenate([filters])
    domain = _input_transform(inputs)  # 36 x [N, th, tw, C]
    tile_shape = tf.concat([tf.shape(domain[0])[:3], [filters]], 0)
    products = [
        tf.reshape(tf.matmul(tf.reshape(point, [-1, channels]), point_kernel), tile_shape)
        for point, point_kernel in zip(domain, tf.unstack(kernel_transform(kernel)))
    ]
    outputs = _output_transform(*products)  # [N, 4th, 4tw, K]
    outputs = tf.slice(outputs, [0, 0, 0, 0], tf.stack([-1, height, width, -1]))
    return tf.ensure_shape(outputs, static_shape)
