"""The microcontroller section: r8's int8 ``.tflite`` files on TFLite Micro, arena and flash beside
two boards' RAM and flash."""

from pathlib import Path

from r8.report.blocks import Para, Table
from r8.report.files import pyplot, save_figure
from r8.rows import REFERENCE_BACKEND, McuRow

# Memory of common MLPerf Tiny boards (bytes): the lines of the microcontroller chart.
# NUCLEO-L4R5ZI: STMicroelectronics' STM32L4R5xx datasheet (DS12023): 640 KB SRAM, 2 MB flash;
# it is MLPerf Tiny's reference board. Arduino Nano 33 BLE Sense: Nordic's nRF52840 Product
# Specification: 256 KB RAM, 1 MB flash.
BOARDS = {"NUCLEO-L4R5ZI (STM32L4R5ZI)": (640 << 10, 2 << 20), "Arduino Nano 33 BLE Sense (nRF52840)": (256 << 10, 1 << 20)}


def mcu_blocks(rows: list[tuple[str, McuRow]]) -> list:
    """The table of every int8 .tflite run on TFLite Micro ((model stem, row) each): accuracy,
    agreement with LiteRT's kernels, arena and flash bytes, ops."""
    table = []
    for model, r in rows:
        m = r.measured
        parted = ", ".join(f"{op} ({d['images']} images, ≤ {d['max_lsb']} LSB)" for op, d in m["ref_kernels_first_differ_at"].items())
        table.append([model, r.config, f"{r.top1:.2%}", f"{r.subsets['perf200']:.1%}" if "perf200" in r.subsets else "-",
                      f"{r.litert_top1:.2%}", f"{r.drop_pp:.2f} [{r.drop_ci95_pp[0]:.2f}, {r.drop_ci95_pp[1]:.2f}]",
                      "bit-exact" if m["bitexact_ref_kernels"] else f"{m['differs_ref_kernels']} differ, first at {parted}",
                      f"{m['differs_xnnpack']} / {m['differs_xnnpack_top1']}",
                      f"{r.arena_bytes:,}" + (f" ({m['arena']['peak_activations']:,})" if "peak_activations" in m["arena"] else ""),
                      f"{m['flash']['total']:,} ({m['flash']['weights']:,} + {m['flash']['graph']:,})",
                      " ".join(m["ops"]), f"{m['tflm_s']:.0f}"])
    head = ["model", "int8 .tflite", "TFLM top-1", "perf200", "LiteRT top-1", "drop pp [95 % CI]", "vs LiteRT reference kernels",
            "≠ XNNPACK", "arena B (peak activations)", "flash B (weights + graph)", "ops", "TFLM s"]
    return [Para("Each int8 .tflite on TensorFlow Lite for Microcontrollers (the `tflite-micro` package: the reference "
                 "kernels an MCU build runs), over the test images; the drop is against the model's fp32, as in every "
                 "row. Reference kernels: LiteRT's BUILTIN_REF kernels, compared output by output; where they part, "
                 "the first op whose output differs. XNNPACK: LiteRT's default kernels (outputs / top-1 that differ). "
                 "Arena: the smallest that allocates and invokes (bisection); in brackets the most activation bytes "
                 "live at once, which no layer-by-layer runtime plans below. Flash: the file, weights + graph."),
            Table(head, table)]


def boards_note() -> Para:
    return Para("Board lines in the chart: " + "; ".join(f"{name} {ram >> 10} KiB RAM, {flash >> 20} MiB flash"
                                                        for name, (ram, flash) in BOARDS.items())
                + " (STM32L4R5xx datasheet DS12023; nRF52840 Product Specification).")


def mcu_figure(rows: list[tuple[str, McuRow]], path: Path) -> None:
    """RAM (arena) and flash per int8 .tflite, the published references in gray, against the
    memory of common MLPerf Tiny boards."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(rows) + 2))
    labels = [f"{model}: {r.config}"[:48] for model, r in rows]
    for ax, (what, key, board) in zip(axes, (("RAM: arena", "arena_bytes", 0), ("flash", "flash_bytes", 1))):
        kib = [getattr(r, key) / 1024 for _, r in rows]
        ax.barh(range(len(rows)), kib, color=["tab:gray" if r.source_backend == REFERENCE_BACKEND else "tab:blue"
                                              for _, r in rows])
        for y, v in enumerate(kib):
            ax.text(v, y, f" {v:,.0f}", va="center", fontsize=7)
        for (name, sizes), style in zip(BOARDS.items(), ("--", ":")):
            ax.axvline(sizes[board] / 1024, color="tab:red", linestyle=style, label=f"{name}: {sizes[board] >> 10:,} KiB")
        ax.set_yticks(range(len(rows)), labels if board == 0 else [""] * len(rows), fontsize=7)
        ax.set(xlabel="KiB (gray: published int8 model)", title=what, xlim=(0, 1.05 * max(s[board] for s in BOARDS.values()) / 1024))
        ax.legend(fontsize=6, loc="center right")
    save_figure(fig, path, dpi=110)
