"""Helpers shared by the benchmark scripts: core count, timing, medians and the machine description.

Import torch (if used) before TensorFlow in the scripts themselves: the other order segfaults with
torch 2.14.1 + TF 2.21. This module imports neither.
"""

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def core_count():
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def median(values):
    return float(statistics.median(values))


def timed(fn, *args):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def _version(module_name):
    module = sys.modules.get(module_name)
    return getattr(module, "__version__", None) if module else None


def machine_info(cores):
    """CPU model, cores, platform, the versions of the libraries loaded so far, git commit, load average."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    info = {
        "cpu": cpu,
        "cores_available": cores,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for name in ("numpy", "tensorflow", "keras", "mrcnn", "torch", "torchvision"):
        info[name] = _version(name)
    info["mrcnn_commit"] = commit
    info["loadavg_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return info
