"""What every report writer shares: its JSON and Markdown written atomically, figures saved, the stamp of
the command that made it, and GitHub's step summary."""


import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from r8.core.cache import atomic_write
from r8.report.blocks import Heading, markdown


def write_report(report: dict, blocks: list, out_dir: Path, stem: str, title: str) -> tuple[Path, Path]:
    """``stem.json`` (the contract outside checks read) and ``stem.md`` rendered from the same
    blocks as the HTML index, each written atomically."""
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    stem = report.get("model", {}).get("stem")
    text = markdown([Heading(0, f"{title}: {stem}" if stem else title), *blocks])
    atomic_write(js, lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
    atomic_write(md, lambda tmp: tmp.write_text(text))
    return js, md


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def stamp(job: str) -> dict:
    """When, and by which command, a report was made: ``command`` and ``generated``."""
    cli = sys.argv[0].endswith(os.path.join("r8", "__main__.py"))
    return {"command": "python -m r8 " + " ".join(sys.argv[1:]) if cli else f"r8.jobs.{job}()",
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def append_step_summary(markdown_text: str) -> None:
    """On GitHub Actions (``GITHUB_STEP_SUMMARY`` set), add the text to the run's summary page."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown_text.rstrip() + "\n\n")
