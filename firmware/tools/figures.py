#!/usr/bin/env python3
"""Size and instruction figures of the firmware, as a Markdown section for BENCHMARKS.md.

  figures.py ELF MAP LOG

ELF: firmware.elf (symbol addresses and sizes via arm-none-eabi-nm), MAP: the linker map (which
input file each byte of flash and RAM came from), LOG: the output of the firmware run under QEMU
with tools/icount.c watching the fw_mark_* functions (the firmware prints its arena and stack
high-water marks, the plugin the instruction counts). Standard library only.
"""
import re
import subprocess
import sys
from collections import defaultdict

FLASH_END = 0x20000000  # firmware.ld: flash below, RAM from here
KDR = "kdruntime (runtime + C ABI)"
CB = "compiler_builtins (Rust's soft double, mem*)"


def symbols(elf):
    out = subprocess.run(["arm-none-eabi-nm", "-S", elf], check=True, capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
        elif len(parts) == 3:
            syms[parts[2]] = (int(parts[0], 16), 0)
    return syms


def origin(section, path):
    """Which part of the firmware an input section belongs to."""
    if "libkdruntime.a(compiler_builtins" in path:
        return CB
    if "libkdruntime.a(" in path:
        return KDR
    if "libgcc.a(" in path:
        return "libgcc (C side)"
    if path.endswith("model_data.o"):
        return "model (model_data.c)"
    if section.endswith("g_test_image"):
        return "test photo (raw RGB)"
    if path.endswith(".o"):
        return "firmware C code (main, startup, semihosting)"
    return "other"


def map_sizes(path):
    """Bytes per (origin, 'flash'|'ram') from the 'Linker script and memory map' part."""
    text = open(path).read()
    text = text[text.index("Linker script and memory map") :]
    sizes = defaultdict(int)
    pending = None
    for line in text.splitlines():
        one = re.match(r"^ (\.\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$", line)
        name_only = re.match(r"^ (\.\S+)$", line)
        cont = re.match(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(/\S+|\S+\.o\S*|\S+\.a\(\S+\))$", line)
        if one:
            sec, addr, size, f = one.group(1), int(one.group(2), 16), int(one.group(3), 16), one.group(4)
        elif name_only:
            pending = name_only.group(1)
            continue
        elif cont and pending:
            sec, addr, size, f = pending, int(cont.group(1), 16), int(cont.group(2), 16), cont.group(3)
        else:
            pending = None
            continue
        pending = None
        if size == 0 or sec.startswith((".debug", ".comment", ".ARM.attributes")):
            continue
        region = "flash" if addr < FLASH_END else "ram"
        sizes[(origin(sec, f), region)] += size
        if sec.startswith(".data"):  # initial values also live in flash
            sizes[(origin(sec, f), "flash")] += size
    return sizes


def marks(log, syms):
    found = {}
    for line in open(log):
        m = re.match(r"mark 0x([0-9a-f]+) (\d+)", line)
        if m:
            found.setdefault(int(m.group(1), 16), int(m.group(2)))
        t = re.match(r"total (\d+)", line)
        if t:
            found["total"] = int(t.group(1))
    by_name = {}
    for name in ("fw_mark_main", "fw_mark_init", "fw_mark_letterbox", "fw_mark_invoke", "fw_mark_done"):
        addr = syms[name][0] & ~1
        if addr not in found:
            sys.exit(f"figures: no count for {name} at 0x{addr:x} in {log}")
        by_name[name] = found[addr]
    by_name["total"] = found["total"]
    return by_name


def main(elf, map_path, log):
    syms = symbols(elf)
    sizes = map_sizes(map_path)
    run = open(log).read()
    arena = int(re.search(r"arena: (\d+) bytes", run).group(1))
    stack_init, stack_run = (int(x) for x in re.search(r"stack used: (\d+) bytes by init, (\d+)", run).groups())
    stack_reserved = syms["__stack_top"][0] - syms["__stack_bottom"][0]
    n = marks(log, syms)
    size_out = subprocess.run(["arm-none-eabi-size", "-A", elf], check=True, capture_output=True, text=True).stdout
    sec = {p[0]: int(p[1]) for p in (l.split() for l in size_out.splitlines()) if len(p) >= 3 and p[0].startswith(".")}

    def kib(b):
        return f"{b:,} B ({b / 1024:.1f} KiB)"

    flash_total = sec.get(".text", 0) + sec.get(".data", 0)
    rows = [
        "| flash (`.text` incl. rodata, + `.data` init) | bytes |",
        "|---|---|",
    ]
    order = [
        KDR,
        CB,
        "firmware C code (main, startup, semihosting)",
        "libgcc (C side)",
        "model (model_data.c)",
        "test photo (raw RGB)",
        "other",
    ]
    for o in order:
        if sizes.get((o, "flash")):
            rows.append(f"| {o} | {sizes[(o, 'flash')]:,} |")
    padding = flash_total - sum(sizes.get((o, "flash"), 0) for o in order)
    rows.append(f"| alignment padding | {padding:,} |")
    rows.append(f"| **total** (arm-none-eabi-size: text {sec.get('.text', 0):,} + data {sec.get('.data', 0):,}) | **{flash_total:,}** |")
    cb = sizes.get((CB, "flash"), 0)
    code = sizes[(KDR, "flash")] + cb
    ram = [
        "| RAM | bytes |",
        "|---|---|",
        f"| arena (kdruntime's planner, `kd_model_arena_size`) | {arena:,} |",
        f"| interpreter handle (`kd_interpreter`) | {syms['interp'][1]:,} |",
        f"| other `.bss` + `.data` (alignment) | {sec.get('.bss', 0) + sec.get('.data', 0) - syms['arena'][1] - syms['interp'][1]:,} |",
        f"| stack used: init (validate, plan, prepare) | {stack_init:,} |",
        f"| stack used: letterbox + invoke | {stack_run:,} |",
        f"| stack reserved (`STACK_SIZE`) | {stack_reserved:,} |",
        f"| **total** (arm-none-eabi-size: bss {sec.get('.bss', 0):,} + stack {sec.get('.stack', 0):,} + data {sec.get('.data', 0):,}) | **{sec.get('.bss', 0) + sec.get('.stack', 0) + sec.get('.data', 0):,}** |",
    ]
    phases = [
        ("reset to main (copy .data, zero .bss, paint the stack)", n["fw_mark_main"]),
        ("kd_model_arena_size + kd_interpreter_init (validate, plan, prepare)", n["fw_mark_letterbox"] - n["fw_mark_init"]),
        ("kd_letterbox (451x300 RGB photo to 96x96)", n["fw_mark_invoke"] - n["fw_mark_letterbox"]),
        ("**kd_invoke (one inference)**", n["fw_mark_done"] - n["fw_mark_invoke"]),
        ("whole run (until semihosting exit)", n["total"]),
    ]
    inst = ["| phase | instructions |", "|---|---|"] + [f"| {p} | {v:,} |" for p, v in phases]
    print("\n".join(rows))
    print()
    print(f"kdruntime's code on its own (runtime, C ABI and the compiler builtins it pulls in, after "
          f"LTO and section GC): **{kib(code)}**; of it, compiler_builtins "
          f"{cb:,} B.")
    print()
    print("\n".join(ram))
    print()
    print("\n".join(inst))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
