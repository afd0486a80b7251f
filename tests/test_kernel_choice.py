"""Measured kernel choices (``mrcnn.kernels.autotune``), the per-kernel switch and the bf16 check."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.conv import Conv2D
from mrcnn.kernels import autotune, cpu, select, switch, winograd


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
    assert saved["toy fast"]["fast"] is True and saved["toy slow"]["fast"] is False
    assert saved["toy slow"]["fast_s"] > saved["toy slow"]["default_s"]


def test_choices_survive_the_process_in_the_cache_file(measured):
    measured.write_text(json.dumps({autotune.machine_key(): {"toy": {"fast": False}}}))
    assert autotune.faster("toy", lambda: pytest.fail("should come from the file")) is False
    other_machine = {"another CPU": {"toy": {"fast": True}}}
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


def test_no_measuring_uses_every_fast_path(monkeypatch):
    monkeypatch.setenv("MRCNN_MEASURE_KERNELS", "0")
    autotune.forget()
    assert autotune.faster("anything", lambda: pytest.fail("must not measure")) is True


def test_winograd_follows_the_measured_choice(measured, monkeypatch):
    """uses_winograd asks autotune about this shape (forward only without a tape) and obeys it."""
    layer = Conv2D(8, 3, padding="same")
    layer.build((None, 16, 16, 4))
    asked = []
    monkeypatch.setattr(autotune, "faster", lambda problem, build: asked.append(problem) or False)
    assert select.uses_winograd(layer, tf.TensorShape([2, 16, 16, 4])) is False
    assert asked == ["winograd_conv3x3 [2, 16, 16, 4]->8 forward"]
    inputs = tf.random.normal([2, 16, 16, 4])
    np.testing.assert_allclose(
        layer(inputs), tf.nn.conv2d(inputs, layer.kernel, 1, "SAME") + layer.bias, atol=1e-5
    )
    with tf.GradientTape():
        select.uses_winograd(layer, tf.TensorShape([2, 16, 16, 4]))
    assert asked[-1].endswith("forward+backward")


def test_timing_problem_matches_tensorflow():
    """The timing pair computes the same numbers by both kernels, on a capped, representative shape."""
    assert winograd.timing_shape([None, 256, 256, 64]) == [1, 64, 64, 64]
    assert winograd.timing_shape([None, 14, 14, 256]) == [21, 14, 14, 256]
    assert winograd.timing_shape([8, 4, 4, 32]) == [8, 4, 4, 32]
    for with_gradient in (False, True):
        fast, default = winograd.timing_pair([None, 12, 12, 8], 16, with_gradient)
        np.testing.assert_allclose(fast().numpy(), default().numpy(), rtol=1e-4, atol=1e-2)


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
