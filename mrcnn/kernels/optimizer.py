"""The training optimizer: Keras' SGD with momentum, its clipping and update fused into two kernels.

Keras 3's ``SGD(momentum=m, clipnorm=c)`` updates each weight with about ten element-wise TensorFlow ops
(the clipping's square, sum, multiply and divide, then the momentum's multiplies, subtraction and two
assignments), each one a pass over the weight's memory. ``ClippedMomentumSGD`` computes the same update
with two kernels per weight: ``L2Loss`` for the gradient's norm, then ``ResourceApplyKerasMomentum``
(TensorFlow's fused form of exactly Keras' momentum rule), whose learning rate is scaled by the clipping
factor ``clipnorm / max(norm, clipnorm)``. Measurements are in benchmarks/README.md.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn")
class ClippedMomentumSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with the same arguments, variables and update rule, faster on CPU.

    Per weight ``w`` with gradient ``g`` (summed over the replicas under a ``tf.distribute`` strategy):
    ``g <- g * clipnorm / max(||g||, clipnorm)`` when ``clipnorm`` is set, then Keras' rule
    ``v <- momentum * v - lr * g``, ``w <- w + v`` (Nesterov: ``w <- w + momentum * v - lr * g``).
    Only the per-tensor ``clipnorm`` is fused; ``global_clipnorm`` and ``clipvalue`` are applied as by
    Keras before the update.
    """

    def _clip_gradients(self, grads):
        if self.clipnorm and self.clipnorm > 0:
            return grads  # clipped in update_step, by scaling the learning rate
        return super()._clip_gradients(grads)

    def _clip_factor(self, gradient):
        """clipnorm / max(||gradient||, clipnorm): 1 for gradients within the norm (and for zero ones)."""
        clipnorm = tf.constant(self.clipnorm, gradient.dtype)
        norm = tf.sqrt(2.0 * tf.nn.l2_loss(gradient))
        return clipnorm / tf.maximum(norm, clipnorm)

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        gradient = tf.cast(gradient, variable.dtype)
        learning_rate = tf.cast(learning_rate, variable.dtype)
        if self.clipnorm and self.clipnorm > 0:
            learning_rate = learning_rate * self._clip_factor(gradient)
        handle = _handle(variable)
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=handle, alpha=learning_rate, delta=gradient)
            return
        velocity = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=handle,
            accum=_handle(velocity),
            lr=learning_rate,
            grad=gradient,
            momentum=tf.cast(self.momentum, variable.dtype),
            use_nesterov=self.nesterov,
        )


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (a replica's own inside a strategy update)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle
