"""A Conv2D whose backward pass visits only the output positions that receive a gradient.

The RPN's shared 3x3 convolution (``rpn_conv_shared``, 512 filters) runs at every position of P2..P6,
because every anchor is scored to make proposals. Its training loss, though, only reads the anchors
sampled by ``build_rpn_targets`` (RPN_TRAIN_ANCHORS_PER_IMAGE of them, 256 by default, among 4092
anchors per image at the 128 px shapes config), and the proposals leave the graph's gradient
(``targets.py`` stops it). So the gradient arriving at this convolution's output is zero at most
positions (at least 81% of them in that example), yet a dense convolution backward pass does the full
arithmetic twice: once for the kernel gradient and once for the input gradient.

``SparseGradientConv2D`` computes the same forward pass as ``keras.layers.Conv2D`` and the exact same
gradients, but from the rows that are nonzero only: it gathers the input patches at those positions
(one matmul gives the kernel gradient) and scatters the patch gradients back (one matmul and one
scatter-add give the input gradient). When more than ``DENSE_FRACTION`` of the positions are active,
it uses TensorFlow's dense convolution gradients instead.
"""

import keras
import tensorflow as tf

from mrcnn import winograd

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


@keras.saving.register_keras_serializable(package="mrcnn")
class SparseGradientConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (same arguments, weights and outputs) with a sparse backward pass.

    Only stride 1, 'same' padding, odd kernel sizes, no dilation or groups, channels-last, with a bias
    and a ReLU or linear activation: the RPN's shared convolution. Input [B, H, W, C] -> [B, H, W, filters].
    The gradient is exact; it is computed from the output positions whose gradient is nonzero (see the
    module docstring), or densely when more than ``DENSE_FRACTION`` of them are. A 3x3 float32 forward pass
    on CPU runs by Winograd's F(2x2, 3x3) (``mrcnn.winograd``).
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        activation = keras.activations.serialize(self.activation)
        name = activation if isinstance(activation, str) else activation.get("config", {}).get("name")
        problems = [
            text
            for failed, text in (
                (tuple(self.strides) != (1, 1), f"strides {self.strides}"),
                (self.padding != "same", f"padding '{self.padding}'"),
                (any(k % 2 == 0 for k in self.kernel_size), f"even kernel size {self.kernel_size}"),
                (tuple(self.dilation_rate) != (1, 1), f"dilation {self.dilation_rate}"),
                (self.groups != 1, f"groups {self.groups}"),
                (self.data_format != "channels_last", f"data_format '{self.data_format}'"),
                (not self.use_bias, "use_bias=False"),
                (name not in ("relu", "linear"), f"activation {name!r}"),
            )
            if failed
        ]
        if problems:
            raise ValueError(
                f"SparseGradientConv2D supports stride 1, 'same' padding, odd kernels, no "
                f"dilation or groups, channels_last, a bias and relu/linear only; got "
                f"{', '.join(problems)}. Use keras.layers.Conv2D for this layer."
            )
        self._relu = name == "relu"

    def call(self, inputs):
        kernel = tf.cast(self.kernel, self.compute_dtype)
        bias = tf.cast(self.bias, self.compute_dtype)
        relu = self._relu
        use_winograd = winograd.supported(self)

        @tf.custom_gradient
        def convolve(x, w, b):
            if use_winograd:
                z = tf.nn.bias_add(winograd.winograd_conv3x3(x, w), b)
            else:
                z = tf.nn.bias_add(tf.nn.conv2d(x, w, strides=1, padding="SAME"), b)
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
