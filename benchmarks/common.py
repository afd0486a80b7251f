"""Helpers shared by the benchmark scripts: ISA caps, core count, timing, medians and the machine description.

Import torch (if used) before TensorFlow in the scripts themselves: the other order segfaults with
torch 2.14.1 + TF 2.21. This module imports neither.

``--isa avx2|avx512|native`` (``apply_isa_from_argv``, called before TensorFlow and torch are imported)
caps the vector ISA of the libraries that choose their kernels at run time, to compare CPU classes on one
machine: oneDNN in TensorFlow and torch (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA), torch's own kernels
(ATEN_CPU_CAPABILITY), MKL (MKL_ENABLE_INSTRUCTIONS) and XLA's code generation (--xla_cpu_max_isa).
What it does not cap, measured on a 2-core Xeon with AVX-512/AMX (2026-12-05): XLA's dot products (an
XLA-compiled 2048x2048 fp32 matmul ran at 299 GFLOP/s natively and 289 with the caps, while oneDNN's fell
from 325 to 172; mrcnn's XLA programs have no dot products), and no cap lowers clock speed or memory
bandwidth, so an AVX2-capped AVX-512 machine is not an AVX2 machine: a real 2-core AVX2 AMD EPYC measured
28 GFLOP/s. Use it for ratios, not times.
"""

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ISA_CAPS = {
    # --isa: (oneDNN's ONEDNN_MAX_CPU_ISA, torch's ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, XLA's ISA)
    "avx2": ("AVX2", "avx2", "AVX2", "AVX2"),
    "avx512": ("AVX512_CORE_BF16", "avx512", "AVX512", "AVX512"),  # AVX-512 with bf16, without AMX
}
ISA_CHOICES = ("native", *ISA_CAPS)


def apply_isa_from_argv(argv=None):
    """Set the ISA caps of ``--isa`` (read from ``argv``, default sys.argv) in the environment; call it
    before importing TensorFlow or torch. Returns the chosen value ("native" when absent)."""
    argv = sys.argv[1:] if argv is None else argv
    isa = "native"
    for index, item in enumerate(argv):
        if item == "--isa" and index + 1 < len(argv):
            isa = argv[index + 1]
        elif item.startswith("--isa="):
            isa = item.split("=", 1)[1]
    if isa not in ISA_CHOICES:
        raise SystemExit(f"--isa must be one of {', '.join(ISA_CHOICES)}; got {isa!r}")
    if isa != "native":
        onednn, aten, mkl, xla = ISA_CAPS[isa]
        os.environ["ONEDNN_MAX_CPU_ISA"] = os.environ["DNNL_MAX_CPU_ISA"] = onednn
        os.environ["ATEN_CPU_CAPABILITY"] = aten
        os.environ["MKL_ENABLE_INSTRUCTIONS"] = mkl
        flag = f"--xla_cpu_max_isa={xla}"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    os.environ["MRCNN_BENCH_ISA"] = isa
    return isa


def add_isa_argument(parser):
    """The ``--isa`` option (already applied by ``apply_isa_from_argv``; listed here for --help)."""
    parser.add_argument(
        "--isa",
        choices=ISA_CHOICES,
        default="native",
        help="cap oneDNN, torch, MKL and XLA at this ISA to compare CPU classes on one machine "
        "(see benchmarks/common.py)",
    )


def cpu_isa():
    """(widest vector ISA of this CPU, whether it has bf16 instructions), from /proc/cpuinfo."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    widest = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "older"
    if "amx_tile" in flags:
        widest += " + AMX"
    return widest, bool({"avx512_bf16", "amx_bf16"} & flags)


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
    widest, bf16 = cpu_isa()
    isa = os.environ.get("MRCNN_BENCH_ISA", "native")
    info["cpu_widest_isa"] = widest
    info["cpu_bf16"] = bf16
    info["isa_cap"] = isa
    info["isa_in_use"] = widest if isa == "native" else {"avx2": "AVX2", "avx512": "AVX-512 (no AMX)"}[isa]
    if "tensorflow" in sys.modules:  # the scripts call this after configuring TensorFlow's threads
        info["matmul_peak_gflops"] = matmul_peak_gflops()
    info["loadavg_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return info


def matmul_peak_gflops(size=2048, runs=7):
    """This machine's float32 matmul throughput in TensorFlow (oneDNN; GFLOP/s): median of ``runs``
    size x size products. Imports TensorFlow, so call it after the script has."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    product = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    product(a, b).numpy()
    seconds = median([timed(lambda: product(a, b).numpy())[0] for _ in range(runs)])
    return 2.0 * size**3 / seconds / 1e9


def isa_line(machine):
    """One Markdown line: CPU model, its widest ISA, the cap in use and the measured matmul peak."""
    peak = machine.get("matmul_peak_gflops")
    return (
        f"- CPU: {machine['cpu']}; widest ISA {machine['cpu_widest_isa']} (bf16 "
        f"{'yes' if machine['cpu_bf16'] else 'no'}); ISA in use {machine['isa_in_use']} (--isa "
        f"{machine['isa_cap']}); fp32 matmul peak "
        + (f"{peak:.0f} GFLOP/s (TensorFlow, 2048x2048)." if peak else "not measured.")
    )
