"""A Conv2D backward pass that visits only the output positions that receive a gradient.

The RPN's shared 3x3 convolution (``rpn_conv_shared``, 512 filters) runs at every position of P2..P6,
because every anchor is scored to make proposals. Its training loss, though, only reads the anchors
sampled by ``build_rpn_targets`` (RPN_TRAIN_ANCHORS_PER_IMAGE of them, 256 by default, among 4092
anchors per image at the 128 px shapes config), and the proposals leave the graph's gradient
(``targets.py`` stops it). So the gradient arriving at this convolution's output is zero at most
positions, yet a dense convolution backward pass does the full arithmetic twice: once for the kernel
gradient and once for the input gradient.

``conv2d_sparse_gradient`` computes the same forward pass as ``keras.layers.Conv2D`` and the exact same
gradients, but from the rows that are nonzero only: it gathers the input patches at those positions
(one matmul gives the kernel gradient) and scatters the patch gradients back (one matmul and one
scatter-add give the input gradient). When more than ``DENSE_FRACTION`` of the positions are active,
it uses TensorFlow's dense convolution gradients instead.
"""

import keras
import tensorflow as tf

DENSE_FRACTION = 0.5  # above this share of active positions the dense backward pass is cheaper


def sparse_conv_backward(inputs, kernel, grad_outputs, active_mask):
    """Gradients of a stride-1 'same' convolution from the output positions with a nonzero gradient.

    inputs: [B, H, W, C]; kernel: [kh, kw, C, F] with odd kh and kw; grad_outputs: [B, H, W, F], the
    gradient at the convolution's output (bias and activation already applied); active_mask: [B, H, W]
    bool, True where any channel of grad_outputs is nonzero. Returns
    ``(grad_inputs [B, H, W, C], grad_kernel [kh, kw, C, F], grad_bias [F])``, equal to the dense
    gradients up to float rounding.
    """
    kh, kw, channels, filters = kernel.shape
    pad_h, pad_w = kh // 2, kw // 2
    active = tf.where(active_mask)  # [n, 3] (b, y, x)
    grad_rows = tf.gather_nd(grad_outputs, active)  # [n, F]
    padded = tf.pad(inputs, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    offsets = tf.constant([[0, dy, dx] for dy in range(kh) for dx in range(kw)], tf.int64)  # [kh*kw, 3]
    window = active[:, None, :] + offsets[None]  # [n, kh*kw, 3]: the padded-input cells each row reads
    patches = tf.reshape(tf.gather_nd(padded, window), [-1, kh * kw * channels])  # [n, kh*kw*C]
    flat_kernel = tf.reshape(kernel, [kh * kw * channels, filters])
    grad_kernel = tf.reshape(tf.matmul(patches, grad_rows, transpose_a=True), [kh, kw, channels, filters])
    grad_patches = tf.matmul(grad_rows, flat_kernel, transpose_b=True)  # [n, kh*kw*C]
    grad_padded = tf.scatter_nd(
        tf.reshape(window, [-1, 3]),
        tf.reshape(grad_patches, [-1, channels]),
        tf.shape(padded, out_type=tf.int64),
    )
    height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
    grad_inputs = grad_padded[:, pad_h : pad_h + height, pad_w : pad_w + width, :]
    return grad_inputs, grad_kernel, tf.reduce_sum(grad_rows, axis=0)


def dense_conv_backward(inputs, kernel, grad_outputs):
    """The same three gradients from TensorFlow's dense convolution backward ops."""
    grad_inputs = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.shape(inputs),
        filter=kernel,
        out_backprop=grad_outputs,
        strides=[1, 1, 1, 1],
        padding="SAME",
    )
    grad_kernel = tf.raw_ops.Conv2DBackpropFilter(
        input=inputs,
        filter_sizes=tf.shape(kernel),
        out_backprop=grad_outputs,
        strides=[1, 1, 1, 1],
        padding="SAME",
    )
    return grad_inputs, grad_kernel, tf.reduce_sum(grad_outputs, axis=[0, 1, 2])


def _activation_name(layer):
    activation = keras.activations.serialize(layer.activation)
    return activation if isinstance(activation, str) else activation.get("config", {}).get("name")


def fits(layer) -> bool:
    """True when ``layer`` (a Keras Conv2D) is a convolution ``conv2d_sparse_gradient`` computes: stride 1,
    'same' padding, odd kernel sizes, no dilation or groups, channels-last, a bias, ReLU or linear."""
    return (
        tuple(layer.strides) == (1, 1)
        and layer.padding == "same"
        and all(k % 2 == 1 for k in layer.kernel_size)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.use_bias
        and _activation_name(layer) in ("relu", "linear")
    )


def conv2d_sparse_gradient(layer, inputs, convolution):
    """``layer``'s output (a Conv2D that ``fits``) with the sparse backward pass of the module docstring.

    ``convolution(x, w)``: the forward convolution to use (TensorFlow's or Winograd's). Same outputs and
    gradients as the layer's own ``call``.
    """
    kernel = tf.cast(layer.kernel, layer.compute_dtype)
    bias = tf.cast(layer.bias, layer.compute_dtype)
    relu = _activation_name(layer) == "relu"

    @tf.custom_gradient
    def convolve(x, w, b):
        z = tf.nn.bias_add(convolution(x, w), b)
        y = tf.nn.relu(z) if relu else z

        def grad(dy):
            dz = dy * tf.cast(y > 0, dy.dtype) if relu else dy
            active_mask = tf.reduce_any(tf.not_equal(dz, 0), axis=-1)
            active_share = tf.reduce_mean(tf.cast(active_mask, tf.float32))
            return tf.cond(
                active_share > DENSE_FRACTION,
                lambda: dense_conv_backward(x, w, dz),
                lambda: sparse_conv_backward(x, w, dz, active_mask),
            )

        return y, grad

    return convolve(inputs, kernel, bias)
