"""What a compiled kernel costs, read from what Triton's own compilation produced: ptxas's log
(registers, spill bytes) and the cubin (SASS instruction count).

The SASS instruction count of a kernel is the size of its `.text.<kernel>` ELF section divided by
16: every sm_90 instruction is 16 bytes, and the section holds exactly what `cuobjdump -sass`
lists (checked on 65 cubins), including the NOPs that pad the code to a multiple of 8
instructions. Reading the section needs no tool and takes microseconds.
"""

from __future__ import annotations

import re
import struct

SASS_INSTRUCTION_BYTES = 16  # sm_70 and later: one instruction per 128-bit word


def _text_sections(cubin: bytes) -> dict[str, int]:
    """{section name: size in bytes} of the `.text.*` sections of a cubin (64-bit little-endian ELF)."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2 or cubin[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file (a cubin)")
    (section_offset,) = struct.unpack_from("<Q", cubin, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", cubin, 0x3A)

    def header(index: int) -> tuple:  # Elf64_Shdr: name, type, flags, addr, offset, size, ...
        return struct.unpack_from("<IIQQQQIIQQ", cubin, section_offset + index * entry_size)

    names_offset = header(names_index)[4]
    sizes = {}
    for index in range(count):
        name_at, _, _, _, _, size, *_ = header(index)
        start = names_offset + name_at
        name = cubin[start : cubin.index(b"\0", start)].decode()
        if name.startswith(".text."):
            sizes[name] = size
    return sizes


def sass_instructions(cubin: bytes) -> int:
    """SASS instructions of the kernel(s) in a cubin, NOP padding included."""
    return sum(_text_sections(cubin).values()) // SASS_INSTRUCTION_BYTES


def ptxas_figures(log: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from `ptxas -v` output for one kernel."""
    registers = re.search(r"Used (\d+) registers", log)
    stores = re.findall(r"(\d+) bytes spill stores", log)
    loads = re.findall(r"(\d+) bytes spill loads", log)
    if not (registers and stores and loads):
        raise ValueError(f"no register/spill figures in the ptxas log: {log[:500]!r}")
    return int(registers.group(1)), max(map(int, stores)), max(map(int, loads))
