"""Measured kernel choices: a fast path runs only where it measured faster than TensorFlow's kernel.

A kernel that wins on one CPU can lose on another. Winograd's 3x3 convolution, for one, beats oneDNN's
convolution 2-4x on AVX2 CPUs (where oneDNN convolves by im2col + GEMM) but loses to oneDNN's AVX-512/AMX
kernel on a 256x256 map with 64 channels. So the first time a graph needs a choice for one problem (a
kernel and its shapes), ``choose`` times the fast paths and TensorFlow's kernel on random data of that
shape, in turn, and keeps a fast path only when its best time is at least 5% below the default's (the
fastest, where several compete). Choices are kept for the process and in a JSON file per machine (CPU
model, ISA caps, thread count and TensorFlow version), so later processes skip the timing:

- ``MRCNN_KERNEL_CACHE``: the file (default ``$XDG_CACHE_HOME/mrcnn/kernel_choices.json``, else
  ``~/.cache/mrcnn/kernel_choices.json``); ``0`` keeps choices in memory only.
- ``MRCNN_MEASURE_KERNELS=0``: no timing; the first fast path listed runs wherever it fits
  (deterministic, as the tests use it).
"""

import json
import os
import platform
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

# A fast path must be at least this much faster than the default to be chosen (timing noise guard).
MARGIN = 0.95
ROUNDS = 3

_choices: dict[str, bool] = {}
_state = {"disk": None, "announced": False}


def measuring() -> bool:
    """False when MRCNN_MEASURE_KERNELS=0: fast paths are then used wherever they fit."""
    return os.environ.get("MRCNN_MEASURE_KERNELS", "1") != "0"


def cache_path() -> Path | None:
    """The JSON file that keeps measured choices across processes, or None (MRCNN_KERNEL_CACHE=0)."""
    value = os.environ.get("MRCNN_KERNEL_CACHE")
    if value == "0":
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mrcnn" / "kernel_choices.json"


def machine_key() -> str:
    """What a measured choice depends on: CPU model, ISA caps, oneDNN switch, threads, TF version."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    caps = [
        os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""),
        " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "max_isa" in f),
    ]
    return f"{model} | caps {'/'.join(caps)} | {threads} threads | tf {tf.__version__}"


def _disk() -> dict:
    if _state["disk"] is None:
        _state["disk"] = {}
        path = cache_path()
        if path is not None and path.is_file():
            try:
                _state["disk"] = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                warnings.warn(f"mrcnn: ignoring unreadable kernel-choice cache {path}: {error}", stacklevel=3)
    return _state["disk"]


def _save(problem: str, record: dict) -> None:
    """Add one measured choice to the cache file (temporary file + rename, so readers never see half)."""
    disk = _disk()
    disk.setdefault(machine_key(), {})[problem] = record
    path = cache_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump(disk, handle, indent=1, sort_keys=True)
        os.replace(handle.name, path)
    except OSError as error:
        warnings.warn(
            f"mrcnn: cannot write the kernel-choice cache {path} ({error}); choices are measured again in "
            "every process. Set MRCNN_KERNEL_CACHE to a writable file, or 0.",
            stacklevel=3,
        )


def _seconds(run: Callable[[], tf.Tensor]) -> float:
    start = time.perf_counter()
    run().numpy()
    return time.perf_counter() - start


def measure(runs: dict[str, Callable[[], tf.Tensor]], rounds: int = ROUNDS) -> dict[str, float]:
    """Best-of-``rounds`` seconds of each run (each returns a small tensor), taken in turn after one
    untimed call of each (tracing, XLA compilation)."""
    for run in runs.values():
        run().numpy()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(_seconds(run))
    return {name: min(values) for name, values in times.items()}


def choose(problem: str, build: Callable[[], dict[str, Callable[[], tf.Tensor]]]) -> str:
    """The name of the kernel to use for ``problem`` (a string naming the computation and its shapes).

    build: returns {name: run} for the candidates, one of them named "default" (TensorFlow's kernel);
    each run is a zero-argument callable that computes one instance of the problem eagerly and returns a
    small tensor. Called (and timed) only when no choice is known for this machine, in a thread of its
    own, so it runs eagerly even while a graph is being traced. A fast path is chosen only when its best
    time is at most ``MARGIN`` times the default's; among those, the fastest. Without measuring
    (MRCNN_MEASURE_KERNELS=0) the first non-default candidate wins.
    """
    if problem in _choices:
        return _choices[problem]
    known = _disk().get(machine_key(), {}).get(problem) if measuring() else None
    if known is not None:
        _choices[problem] = known["choice"]
        return _choices[problem]
    if not measuring():
        return next(name for name in _in_fresh_thread(build) if name != "default")
    if not _state["announced"]:
        _state["announced"] = True
        where = cache_path() or "memory only"
        print(
            f"mrcnn: timing fast kernels against TensorFlow's on this CPU, once per shape (cache: {where})",
            file=sys.stderr,
        )
    logger = tf.get_logger()  # every problem traces new functions: TensorFlow would warn of retracing
    level = logger.level
    logger.setLevel("ERROR")
    try:
        seconds = _in_fresh_thread(lambda: measure(build()))
    finally:
        logger.setLevel(level)
    limit = MARGIN * seconds["default"]
    winners = {name: s for name, s in seconds.items() if name != "default" and s <= limit}
    choice = min(winners, key=winners.get) if winners else "default"
    _choices[problem] = choice
    _save(problem, {"choice": choice, "seconds": {name: round(s, 6) for name, s in seconds.items()}})
    return choice


def _in_fresh_thread(function):
    """``function()`` run in a new thread: eagerly, outside any graph being traced, strategy scope or
    paused gradient tape of the calling thread (TensorFlow keeps those per thread; ``tf.init_scope``
    would pause the tapes that a forward+backward problem needs). Exceptions are re-raised here."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="mrcnn-kernel-timing")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def faster(problem: str, build: Callable[[], tuple[Callable, Callable]]) -> bool:
    """``choose`` for one fast path: build returns (fast, default); True when the fast path is chosen."""
    return choose(problem, lambda: dict(zip(("fast", "default"), build()))) == "fast"


def forget() -> None:
    """Drop the choices held in memory (the cache file stays); the next lookups read it again."""
    _choices.clear()
    _state["disk"] = None
