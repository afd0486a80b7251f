"""Measured kernel choices (``mrcnn.kernels.autotune``), the per-kernel switch and the bf16 check."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.conv import Conv2D
from mrcnn.kernels import autotune, conv_timing, cpu, select, switch, winograd4


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """Measuring on, choices cached in a fresh file; memory cleared before and after."""
    monkeypatch.setenv("MRCNN_MEASURE_KERNELS", "1")
    monkeypatch.setenv("MRCNN_KERNEL_CACHE", str(tmp_path / "choices.json"))
    autotune.forget()
    yield tmp_path / "choices.json"
    autotune.forget()


def _pair(fast_runs, default_runs):
    """Two runners: ``fast_runs`` / ``default_runs`` matmuls of 256x256 each, counting their calls."""
    calls = {"fast": 0, "default": 0}
    a = tf.random.normal([256, 256])

    def runner(name, runs):
        def run():
            calls[name] += 1
            x = a
            for _ in range(runs):
                x = tf.matmul(x, a) * 1e-3
            return tf.reduce_sum(x)

        return run

    return (runner("fast", fast_runs), runner("default", default_runs)), calls


def test_faster_keeps_the_fast_path_only_where_it_wins(measured):
    (fast, default), calls = _pair(1, 40)
    assert autotune.faster("toy fast", lambda: (fast, default)) is True
    (fast, default), _ = _pair(40, 1)
    assert autotune.faster("toy slow", lambda: (fast, default)) is False
    # timed once (warm-up + ROUNDS each), then answered from memory without building anything
    assert calls == {"fast": autotune.ROUNDS + 1, "default": autotune.ROUNDS + 1}
    assert autotune.faster("toy fast", lambda: pytest.fail("measured twice")) is True
    saved = json.loads(measured.read_text())[autotune.machine_key()]
    assert saved["toy fast"]["choice"] == "fast" and saved["toy slow"]["choice"] == "default"
    assert saved["toy slow"]["seconds"]["fast"] > saved["toy slow"]["seconds"]["default"]


def test_choose_takes_the_fastest_of_several(measured):
    (slow, default), _ = _pair(30, 20)
    (quick, _), _ = _pair(1, 1)
    (middle, _), _ = _pair(10, 1)
    runs = {"slow": slow, "middle": middle, "quick": quick, "default": default}
    assert autotune.choose("toy three", lambda: runs) == "quick"


def test_choices_survive_the_process_in_the_cache_file(measured):
    measured.write_text(json.dumps({autotune.machine_key(): {"toy": {"choice": "default"}}}))
    assert autotune.faster("toy", lambda: pytest.fail("should come from the file")) is False
    other_machine = {"another CPU": {"toy": {"choice": "fast"}}}
    measured.write_text(json.dumps(other_machine))
    autotune.forget()
    (fast, default), calls = _pair(1, 40)
    assert autotune.faster("toy", lambda: (fast, default)) is True and calls["fast"] > 0
    assert set(json.loads(measured.read_text())) == {"another CPU", autotune.machine_key()}


def test_unreadable_cache_warns_and_measures(measured):
    measured.write_text("{not json")
    (fast, default), calls = _pair(1, 40)
    with pytest.warns(UserWarning, match="unreadable kernel-choice cache"):
        assert autotune.faster("toy", lambda: (fast, default)) is True
    assert calls["default"] > 0


def test_no_measuring_uses_the_first_fast_path(monkeypatch):
    monkeypatch.setenv("MRCNN_MEASURE_KERNELS", "0")
    autotune.forget()
    untimed = {"first": lambda: pytest.fail("must not run"), "second": None, "default": None}
    assert autotune.choose("anything", lambda: untimed) == "first"


def test_winograd_follows_the_measured_choice(measured, monkeypatch):
    """conv3x3_method asks autotune about this shape (F(4x4) only without a tape) and the layer obeys."""
    layer = Conv2D(8, 3, padding="same")
    layer.build((None, 16, 16, 4))
    asked, answer = [], {"method": "default"}

    def choose(problem, build):
        asked.append((problem, sorted(build())))
        return answer["method"]

    monkeypatch.setattr(autotune, "choose", choose)
    assert select.uses_winograd(layer, tf.TensorShape([2, 16, 16, 4])) is False
    assert asked == [("conv3x3 [2, 16, 16, 4]->8 forward", ["default", "winograd", "winograd4"])]
    inputs = tf.random.normal([2, 16, 16, 4])
    expected = tf.nn.conv2d(inputs, layer.kernel, 1, "SAME") + layer.bias
    for method in ("default", "winograd", "winograd4"):
        answer["method"] = method
        np.testing.assert_allclose(layer(inputs), expected, atol=1e-4)
    with tf.GradientTape():
        select.uses_winograd(layer, tf.TensorShape([2, 16, 16, 4]))
    assert asked[-1] == ("conv3x3 [2, 16, 16, 4]->8 forward+backward", ["default", "winograd"])


def test_timing_problems_match_tensorflow():
    """The timing runners compute the same numbers by every kernel, on a capped, representative shape."""
    assert conv_timing.timing_shape([None, 256, 256, 64]) == [1, 128, 128, 64]
    assert conv_timing.timing_shape([None, 256, 256, 64], with_gradient=True) == [1, 64, 64, 64]
    assert conv_timing.timing_shape([None, 14, 14, 256]) == [21, 14, 14, 256]
    assert conv_timing.timing_shape([8, 4, 4, 32]) == [8, 4, 4, 32]
    for with_gradient in (False, True):
        runs = conv_timing.conv3x3_runners([None, 12, 12, 8], 16, with_gradient)
        assert ("winograd4" in runs) is not with_gradient
        reference = runs.pop("default")().numpy()
        for run in runs.values():
            np.testing.assert_allclose(run().numpy(), reference, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("shape", [(1, 9, 7, 5), (2, 16, 16, 8), (1, 13, 14, 3), (3, 1, 1, 4), (1, 4, 8, 2)])
def test_winograd4_equals_the_direct_convolution(shape):
    """F(4x4, 3x3) on odd, even, tiny and tile-multiple sizes: the 'same' convolution to float32 rounding."""
    rng = np.random.default_rng(sum(shape))
    inputs = rng.normal(size=shape).astype(np.float32)
    kernel = rng.normal(size=(3, 3, shape[3], 6)).astype(np.float32)
    expected = tf.nn.conv2d(inputs, kernel, 1, "SAME").numpy()
    got = winograd4.winograd_conv3x3_f4(tf.constant(inputs), tf.constant(kernel)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_kernel_list_in_the_environment():
    script = (
        "from mrcnn.kernels import switch; "
        "print('ON', [k for k in switch.KERNELS if switch.enabled_by_environment(k)], switch.enabled('nms'))"
    )
    env = dict(os.environ, MRCNN_CPU_KERNELS="winograd, nms", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ON ['winograd', 'nms'] True" in proc.stdout
    env["MRCNN_CPU_KERNELS"] = "winograd,fast_fourier"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode != 0 and "unknown kernels ['fast_fourier']" in proc.stderr


def test_bf16_support_reads_flags_and_caps(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert cpu.has_bf16({}) is True
    assert cpu.has_bf16({"ONEDNN_MAX_CPU_ISA": "AVX2"}) is False
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert cpu.has_bf16({}) is False
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset())
    assert cpu.has_bf16({}) is None


def test_bf16_policy_warns_where_it_is_emulated(monkeypatch):
    from mrcnn import training

    monkeypatch.setattr(cpu, "has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated here and slower than float32"):
        with training.dtype_policy_scope("mixed_bfloat16"):
            pass
    monkeypatch.setattr(cpu, "has_bf16", lambda: True)
    assert training.warn_if_bf16_is_slow() is False


def test_switch_names_match_modules():
    import mrcnn.kernels as package

    for name in switch.KERNELS:
        assert hasattr(package, name) or __import__(f"mrcnn.kernels.{name}")


def test_measuring_inside_a_traced_training_step(measured):
    """A choice needed while a tf.function traces under a recording tape is timed forward and backward
    (in its own thread, where the tape is not paused), and the step's gradients come out."""
    layer = Conv2D(6, 3, padding="same")
    layer.build((None, 8, 8, 6))

    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs) ** 2)
        return tape.gradient(loss, layer.trainable_variables)

    gradients = step(tf.random.normal([4, 8, 8, 6]))
    assert [tuple(g.shape) for g in gradients] == [(3, 3, 6, 6), (6,)]
    saved = json.loads(measured.read_text())[autotune.machine_key()]
    assert list(saved) == ["conv3x3 [4, 8, 8, 6]->6 forward+backward"]
    assert set(saved["conv3x3 [4, 8, 8, 6]->6 forward+backward"]["seconds"]) == {"winograd", "default"}


def _keras_batch_norm_step(layer, x, upstream):
    """(outputs, d inputs, d gamma, d beta) of ``layer(x, training=True)`` against ``upstream``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, training=True)
    grads = tape.gradient(outputs, [x, layer.gamma, layer.beta], output_gradients=upstream)
    return [outputs.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("shape", [(3, 6, 5, 8), (1, 4, 3, 3, 8)])
def test_batch_norm_follows_the_measured_choice(monkeypatch, shape):
    """batch_norm_method asks autotune for this shape; each form gives Keras' outputs, gradients and
    moving averages (4-D backbone and 5-D head inputs)."""
    import keras

    from mrcnn.backbone import BatchNorm

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype(np.float32))
    upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
    gamma, beta = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)

    def build(layer):
        layer.build((None, *shape[1:]) if len(shape) == 4 else shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        return layer

    plain = build(keras.layers.BatchNormalization(momentum=0.9))
    expected = _keras_batch_norm_step(plain, x, upstream)
    asked, answer = [], {}
    monkeypatch.setattr(
        autotune, "choose", lambda problem, build: asked.append((problem, sorted(build()))) or answer["m"]
    )
    for method in ("default", "fused", "xla"):
        answer["m"] = method
        ours = build(BatchNorm(momentum=0.9))
        assert select.batch_norm_method(ours, x, training=True) == method
        for got, want in zip(_keras_batch_norm_step(ours, x, upstream), expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours.moving_mean, plain.moving_mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ours.moving_variance, plain.moving_variance, rtol=1e-5, atol=1e-5)
    flat = [int(np.prod(shape[:-3])), *shape[-3:]]
    assert asked[0] == (f"batch_norm {flat} forward+backward", ["default", "fused", "xla"])
    asked.clear()
    assert select.batch_norm_method(ours, x, training=False) == "default"
    assert select.batch_norm_method(ours, tf.cast(x, tf.bfloat16), training=True) == "fused"
    with switch.disabled():  # no XLA in graphs traced for other runtimes
        assert select.batch_norm_method(ours, x, training=True) == "fused"
    assert asked == []


def test_batch_norm_timing_problems_agree():
    """The timing shape keeps real sizes up to 2**22 values; the three forms compute the same numbers."""
    from mrcnn.kernels import batch_norm_timing

    assert batch_norm_timing.timing_shape([2, 128, 128, 256]) == [1, 128, 128, 256]
    assert batch_norm_timing.timing_shape([2, 256, 256, 64]) == [4, 128, 128, 64]
    assert batch_norm_timing.timing_shape([1, None, 14, 14, 256]) == [16, 14, 14, 256]
    assert batch_norm_timing.timing_shape([None, None, None, 32]) == [16, 64, 64, 32]
    runs = batch_norm_timing.batch_norm_runners([2, 5, 7, 6])
    reference = runs.pop("default")().numpy()
    for run in runs.values():
        np.testing.assert_allclose(run().numpy(), reference, rtol=1e-3, atol=1e-2)
