"""Registers per thread of vLLM 0.2.3's PagedAttention decode kernels, read from the release's own build.

How many thread blocks of a kernel an SM holds at once is limited by the registers each thread uses, which only the
compiled code says. vLLM's wheel carries the kernels as CUDA cubins (ELF) inside ``vllm/_C*.so``; each cubin's
``.nv.info`` section records every kernel's register count (attribute EIATTR_REGCOUNT, 0x2f: symbol index, count).
This script walks the uncompressed cubins of the shared object, maps symbol indices to names through ``.symtab``, and
prints the counts of ``paged_attention_v1_kernel`` and ``paged_attention_v2_kernel`` for block size 16 and 128
threads, by GPU architecture (sm_80: A100, sm_90: H100), dtype and head size (engines.yaml vllm-0.2 decode_grid).

    pip download vllm==0.2.3 --no-deps -d /tmp/vllm023 && cd /tmp/vllm023 && unzip -q vllm-0.2.3-*.whl 'vllm/*'
    python benchmarks/vllm02_kernel_registers.py /tmp/vllm023/vllm/_C.cpython-311-x86_64-linux-gnu.so
"""

from __future__ import annotations

import re
import struct
import sys

REGCOUNT = 0x2F  # EIATTR_REGCOUNT
KERNEL = re.compile(r"_ZN4vllm25paged_attention_(v[12])_kernelI(\w+?)Li(\d+)ELi16ELi128")
DTYPES = {"t": "fp16", "13__nv_bfloat16": "bf16", "f": "fp32"}


def sections(elf: bytes) -> list[tuple[str, int, int, int]]:
    """(name, offset, size, link) of each section of a 64-bit little-endian ELF."""
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    entsize, count, names_at = struct.unpack_from("<HHH", elf, 0x3A)
    raw = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * entsize) for i in range(count)]
    names = raw[names_at][4]

    def name(o: int) -> str:
        end = elf.index(b"\0", names + o)
        return elf[names + o:end].decode(errors="replace")

    return [(name(r[0]), r[4], r[5], r[6]) for r in raw]


def regcounts(elf: bytes) -> dict[str, int]:
    """Kernel name -> registers per thread, from one cubin."""
    secs = sections(elf)
    sym = next((s for s in secs if s[0] == ".symtab"), None)
    info = next((s for s in secs if s[0] == ".nv.info"), None)
    if sym is None or info is None:
        return {}
    strtab = secs[sym[3]][1]
    names = {}
    for i in range(sym[2] // 24):
        o = strtab + struct.unpack_from("<I", elf, sym[1] + i * 24)[0]
        names[i] = elf[o:elf.index(b"\0", o)].decode(errors="replace")
    out, blob, i = {}, elf[info[1]:info[1] + info[2]], 0
    while i + 4 <= len(blob):
        fmt, attr, size = blob[i], blob[i + 1], struct.unpack_from("<H", blob, i + 2)[0]
        if fmt != 4:  # EIFMT_SVAL carries a payload; the other formats do not
            i += 4
            continue
        if attr == REGCOUNT:
            index, regs = struct.unpack_from("<II", blob, i + 4)
            out[names.get(index, "?")] = regs
        i += 4 + size
    return out


def main(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    rows = set()
    for m in re.finditer(b"\x7fELF", data):
        start = m.start()
        if start == 0 or data[start + 4] != 2:
            continue
        elf = data[start:]
        arch = struct.unpack_from("<I", elf, 0x30)[0] & 0xFF
        try:
            counts = regcounts(elf)
        except (struct.error, ValueError, IndexError):
            continue
        for name, regs in counts.items():
            k = KERNEL.match(name)
            if k:
                rows.add((f"sm_{arch}", DTYPES.get(k.group(2), k.group(2)), int(k.group(3)), k.group(1), regs))
    for arch, dtype, head, version, regs in sorted(rows):
        print(f"{arch} {dtype} head {head} {version}: {regs} registers per thread")


if __name__ == "__main__":
    main(sys.argv[1])
