"""What the CPU offers: its instruction-set flags, as oneDNN may use them.

oneDNN (TensorFlow's CPU convolutions and matmuls) uses bf16 instructions (AVX-512 BF16, AMX) when the CPU
has them and ``ONEDNN_MAX_CPU_ISA`` does not cap them away; without them, bfloat16 math is emulated and
slower than float32.
"""

import functools
import os
from pathlib import Path

# ONEDNN_MAX_CPU_ISA values that exclude every bf16 instruction (oneDNN's names, upper case).
_CAPS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


@functools.cache
def cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_bf16(environ=None) -> bool | None:
    """Whether oneDNN can use bf16 instructions here (AVX-512 BF16 or AMX-BF16, not capped away by
    ONEDNN_MAX_CPU_ISA); None when the flags are unknown (no /proc/cpuinfo)."""
    environ = os.environ if environ is None else environ
    flags = cpu_flags()
    if not flags:
        return None
    cap = environ.get("ONEDNN_MAX_CPU_ISA", environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if cap in _CAPS_WITHOUT_BF16:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags)
