"""Which number formats a CPU computes natively, from its instruction-set flags: what `capsim calibrate` times on
a CPU (fp32 always; bf16 and fp16 only where the CPU has units for them, since torch emulates them elsewhere at a
few percent of the fp32 rate).

x86 (``/proc/cpuinfo`` flags): bf16 with AVX512-BF16 (``avx512_bf16``) or AMX-BF16 (``amx_bf16``); fp16 with
AVX512-FP16 (``avx512_fp16``) or AMX-FP16 (``amx_fp16``) (Intel Architecture Instruction Set Extensions Programming
Reference, chapters on AVX512_BF16, AVX512_FP16 and AMX). Arm (``Features``): bf16 with ``bf16`` (FEAT_BF16), fp16
with ``asimdhp`` (half-precision Advanced SIMD arithmetic).
"""

from __future__ import annotations

NATIVE = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"), "fp16": ("avx512_fp16", "amx_fp16", "asimdhp")}
SHOWN = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "asimd",
         "asimdhp", "bf16", "sve")


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's instruction-set flags (x86 ``flags``, Arm ``Features``); empty where the file is missing."""
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def native_formats(flags: set[str]) -> tuple[str, ...]:
    """fp32, then each low-precision format the flags say the CPU computes natively."""
    return ("fp32", *(fmt for fmt, needs in NATIVE.items() if flags & set(needs)))


def describe(flags: set[str]) -> str:
    """One sentence for a calibration's provenance: the relevant flags and the formats they make native."""
    have = [f for f in SHOWN if f in flags]
    missing = [fmt for fmt in NATIVE if fmt not in native_formats(flags)]
    text = f"CPU flags {', '.join(have) or 'none of ' + ', '.join(SHOWN)}: formats timed {', '.join(native_formats(flags))}"
    if missing:
        text += (f"; not timed: {', '.join(missing)} (no {'/'.join(n for m in missing for n in NATIVE[m][:2])} units: "
                 "torch emulates them)")
    return text


__all__ = ["NATIVE", "cpu_flags", "describe", "native_formats"]
