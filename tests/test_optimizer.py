"""ClippedMomentumSGD makes Keras SGD's updates; the trainer's explicit weight-decay gradient is exact."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.kernels.optimizer import ClippedMomentumSGD
from mrcnn.training import MaskRCNNTrainer

SHAPES = [(3, 3, 4, 5), (5,), (7, 2), (4,)]


def run_steps(optimizer, steps=3):
    """Weights after ``steps`` updates with fixed gradients: one within the clip norm, one far above it,
    one zero, one tiny."""
    rng = np.random.default_rng(0)
    weights = [keras.Variable(rng.normal(size=shape).astype(np.float32)) for shape in SHAPES]
    gradients = [
        rng.normal(size=SHAPES[0]).astype(np.float32) * 0.01,
        rng.normal(size=SHAPES[1]).astype(np.float32) * 100.0,
        np.zeros(SHAPES[2], np.float32),
        rng.normal(size=SHAPES[3]).astype(np.float32) * 1e-6,
    ]
    optimizer.build(weights)

    @tf.function
    def step(scale):
        optimizer.apply_gradients([(g * scale, w) for g, w in zip(gradients, weights)])

    for i in range(steps):
        step(tf.constant(1.0 + i))
    return [w.numpy() for w in weights]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(momentum=0.9, clipnorm=5.0),
        dict(momentum=0.9),
        dict(momentum=0.9, nesterov=True, clipnorm=5.0),
        dict(momentum=0.0, clipnorm=5.0),
        dict(momentum=0.5, clipvalue=0.1),
        dict(momentum=0.9, global_clipnorm=1.0),
    ],
)
def test_matches_keras_sgd(kwargs):
    ours = run_steps(ClippedMomentumSGD(learning_rate=0.1, **kwargs))
    reference = run_steps(keras.optimizers.SGD(learning_rate=0.1, **kwargs))
    start = run_steps(keras.optimizers.SGD(learning_rate=0.0, **kwargs))
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(ours[1], start[1])  # the clipped weight moved


def test_clipping_bounds_the_step():
    """With momentum 0 one step moves a weight by lr * min(||g||, clipnorm) exactly."""
    moved = np.array(run_steps(ClippedMomentumSGD(learning_rate=0.1, clipnorm=5.0), steps=1)[1])
    start = np.array(run_steps(ClippedMomentumSGD(learning_rate=0.0, clipnorm=5.0), steps=1)[1])
    np.testing.assert_allclose(np.linalg.norm(moved - start), 0.1 * 5.0, rtol=1e-5)


def test_config_round_trip():
    optimizer = ClippedMomentumSGD(learning_rate=0.02, momentum=0.9, clipnorm=5.0)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is ClippedMomentumSGD
    assert restored.get_config() == optimizer.get_config()


def test_trainer_weight_decay_equals_the_differentiated_term():
    """The value and the gradient added by ``_weight_decay`` are those of the L2 term it replaces:
    WEIGHT_DECAY * sum(w**2) / size(w) over every weight but BatchNorm gamma and beta."""
    rng = np.random.default_rng(1)
    names = ["kernel", "bias", "gamma", "beta", "kernel"]
    shapes = [(3, 3, 2, 4), (4,), (4,), (4,), (6, 5)]
    weights = [keras.Variable(rng.normal(size=s).astype(np.float32), name=n) for n, s in zip(names, shapes)]
    loss_gradients = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes[:-1]] + [None]
    trainer = types.SimpleNamespace(weight_decay=1e-3)
    scale = 0.5  # e.g. 1 / replicas

    value, gradients = MaskRCNNTrainer._weight_decay(trainer, loss_gradients, weights, tf.constant(scale))

    with tf.GradientTape() as tape:
        term = 1e-3 * tf.add_n(
            [
                tf.reduce_sum(tf.square(w)) / float(np.prod(w.shape))
                for w, n in zip(weights, names)
                if n not in ("gamma", "beta")
            ]
        )
    term_gradients = tape.gradient(term, weights)
    np.testing.assert_allclose(value, term, rtol=1e-6)
    for name, got, loss_gradient, term_gradient in zip(names, gradients, loss_gradients, term_gradients):
        expected = 0.0 if loss_gradient is None else loss_gradient.numpy()
        if term_gradient is not None:
            expected = expected + scale * term_gradient.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8, err_msg=name)
    assert gradients[2] is loss_gradients[2]  # gamma: untouched
