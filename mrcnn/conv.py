"""The model's convolution layer: Keras' Conv2D, with its computation chosen by ``mrcnn.kernels``.

``Conv2D`` has Keras' arguments, weights, outputs and gradients. Where a faster CPU kernel computes the
same thing (Winograd for 3x3 float32 convolutions; a sparse backward pass when the loss reads few output
positions), ``mrcnn.kernels.select`` uses it; the layer only states what it computes.
"""

import keras

from mrcnn import kernels


@keras.saving.register_keras_serializable(package="mrcnn")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (same arguments and weights). Input [B, H, W, C] -> [B, H', W', filters].

    sparse_output_gradient: True when the training loss reads only a few output positions (the RPN's
    shared convolution: only the sampled anchors), so a kernel may compute the backward pass from the
    positions that get a gradient. The gradients are the same either way.
    """

    def __init__(self, *args, sparse_output_gradient: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.sparse_output_gradient = bool(sparse_output_gradient)

    def convolution_op(self, inputs, kernel):
        return kernels.convolution(self, inputs, kernel, default=super().convolution_op)

    def call(self, inputs):
        return kernels.conv2d(self, inputs, default=super().call)

    def get_config(self):
        config = super().get_config()
        if self.sparse_output_gradient:  # else Keras' Conv2D config, which keras.layers.Conv2D also reads
            config["sparse_output_gradient"] = True
        return config


# .keras files saved by earlier versions name the FPN's and the RPN's convolutions by their old classes;
# these load them as the same Conv2D.
@keras.saving.register_keras_serializable(package="mrcnn", name="WinogradConv2D")
class LegacyWinogradConv2D(Conv2D):
    """Deprecated name of ``Conv2D`` (a 3x3 Conv2D computed by Winograd on CPU); loads old .keras files."""


@keras.saving.register_keras_serializable(package="mrcnn", name="SparseGradientConv2D")
class LegacySparseGradientConv2D(Conv2D):
    """Deprecated name of ``Conv2D(sparse_output_gradient=True)``; loads old .keras files."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("sparse_output_gradient", True)
        super().__init__(*args, **kwargs)
