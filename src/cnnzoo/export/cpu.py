"""The CPU, named: int8 gains depend on its dot-product instructions (onnxruntime issues #17389, #20052)."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

VECTOR_EXTENSIONS = {  # /proc/cpuinfo flag -> name, in the order printed
    "avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
    "asimd": "NEON", "asimddp": "NEON dot product", "i8mm": "I8MM", "sve": "SVE",
}
# Instructions that multiply int8 and accumulate in one step: without any of them onnxruntime's int8
# kernels widen to int16 first and int8 gains little over fp32 (onnxruntime issues #17389, #20052).
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@dataclass
class CpuInfo:
    model: str
    cores: int
    flags: frozenset

    @property
    def extensions(self) -> list[str]:
        return [name for flag, name in VECTOR_EXTENSIONS.items() if flag in self.flags]

    @property
    def int8_dot_product(self) -> bool:
        return any(flag in self.flags for flag in INT8_DOT_PRODUCT)

    def __str__(self) -> str:
        ext = ", ".join(self.extensions) or "no AVX2/AVX-512/NEON reported"
        return f"{self.model}, {self.cores} logical cores; {ext}"

    def to_dict(self) -> dict:
        return {"model": self.model, "cores": self.cores, "extensions": self.extensions,
                "int8_dot_product": self.int8_dot_product}


def cpu_info() -> CpuInfo:
    """The CPU's name and vector extensions (from /proc/cpuinfo on Linux; the name only elsewhere)."""
    model, flags = "", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown CPU", os.cpu_count() or 1,
                   frozenset(flags))
