"""Writes, from the JUnit files of a gate run, pytest-split's durations file (each test's setup,
call and teardown together: pytest-split's own --store-durations drops a long setup, which is
where a session fixture builds a model's artifacts) and the gate's measured page.

    nox -s tests && python .ci/durations.py reports/junit/*.xml   # -> .test_durations, docs/measured/gate.md
"""

import datetime
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def node_id(classname: str, name: str) -> str:
    """JUnit's ``suite.test_x.TestClass`` + ``test_y[p]`` -> pytest's ``suite/test_x.py::TestClass::test_y[p]``."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        if (ROOT / Path(*parts[:i])).with_suffix(".py").is_file():
            return "::".join(["/".join(parts[:i]) + ".py", *parts[i:], name])
    raise SystemExit(f"{classname}: no such test module under {ROOT}")


def outcome(case) -> str:
    for tag, name in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
        found = case.find(tag)
        if found is not None:
            return "xfailed" if name == "skipped" and found.get("type") == "pytest.xfail" else name
    return "passed"


def gate_page(steps: list[tuple[str, ET.Element]]) -> str:
    """The gate's measured figures: each step's wall time and outcome counts, and the machine."""
    lines = ["| step | wall time | tests |", "|---|---|---|"]
    for name, suite in steps:
        counts: dict[str, int] = {}
        for case in suite.iter("testcase"):
            counts[outcome(case)] = counts.get(outcome(case), 0) + 1
        minutes, seconds = divmod(round(float(suite.get("time"))), 60)
        tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {name} | {minutes} min {seconds:02d} s | {tally} |")
    when = datetime.datetime.fromisoformat(steps[0][1].get("timestamp")).date() if steps[0][1].get("timestamp") else "?"
    return "\n".join([*lines, "", f"Measured on {when}, {cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}.", ""])


def cpu() -> str:
    """The CPU's model name and the int8 instructions that decide r8's kernels (VNNI or not)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return f"{name} ({'VNNI' if flags & {'avx512_vnni', 'avx_vnni'} else 'AVX2 without VNNI' if 'avx2' in flags else 'no AVX2'})"


def main(*junits: str, out: str = str(ROOT / ".test_durations"), page: str = str(ROOT / "docs" / "measured" / "gate.md")) -> None:
    durations, total, steps = {}, 0.0, []
    cases = []
    for junit in junits:
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        steps.append((Path(junit).stem, suite))
        cases += list(suite.iter("testcase"))
    for case in cases:
        test = node_id(case.get("classname"), case.get("name"))
        seconds = round(float(case.get("time")), 3)
        durations[test] = seconds
        total += seconds
        # Under pytest-xdist's loadgroup a grouped test's id ends in "@group" (what pytest-split sees
        # on a worker); `--collect-only` shows it without: both find its duration.
        if "@" in test.rsplit("]", 1)[-1]:
            durations[test.rsplit("@", 1)[0]] = seconds
    Path(out).write_text(json.dumps(durations, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(durations)} ids, {total / 60:.1f} min in all")
    Path(page).parent.mkdir(parents=True, exist_ok=True)
    Path(page).write_text(gate_page(steps))
    print(f"{page}: {', '.join(name for name, _ in steps)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
