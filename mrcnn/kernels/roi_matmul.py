"""A per-RoI convolution whose window covers the whole RoI (the box head's 7x7-on-7x7 and 1x1-on-1x1
"fully connected" convolutions) computed as one matrix product.

Same result as the convolution: the kernel's [kh, kw, C] order is the flattening order of the input.
oneDNN's matmul and its gradients run faster than a valid convolution of the same size (measurements in
benchmarks/README.md).
"""

import keras


def fits(layer, input_shape) -> bool:
    """True when one valid window of ``layer`` (a Keras Conv2D) covers each RoI of a [B, R, h, w, C]
    input: the convolution is a matmul."""
    return (
        len(input_shape) == 5
        and layer.padding == "valid"
        and layer.data_format == "channels_last"
        and layer.groups == 1
        and tuple(layer.dilation_rate) == (1, 1)
        and tuple(input_shape[2:4]) == tuple(layer.kernel_size)
    )


def roi_conv_as_matmul(layer, inputs):
    """[B, R, kh, kw, C] -> [B, R, 1, 1, filters]: ``layer``'s convolution, bias and activation."""
    batch_and_rois = keras.ops.shape(inputs)[:2]
    flat = keras.ops.reshape(inputs, [-1, inputs.shape[2] * inputs.shape[3] * inputs.shape[4]])
    outputs = keras.ops.matmul(flat, keras.ops.reshape(layer.kernel, [-1, layer.filters]))
    if layer.use_bias:
        outputs = keras.ops.add(outputs, layer.bias)
    if layer.activation is not None:
        outputs = layer.activation(outputs)
    return keras.ops.reshape(outputs, [batch_and_rois[0], batch_and_rois[1], 1, 1, layer.filters])
