"""Writes pytest-split's durations file from a gate run's JUnit XML: each test's setup, call and
teardown together (pytest-split's own --store-durations drops a long setup, which is where a
session fixture builds a model's artifacts).

    nox -s tests -- --junitxml=gate.xml && python .ci/durations.py gate.xml   # -> .test_durations
"""

import json
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


def main(junit: str, out: str = str(ROOT / ".test_durations")) -> None:
    durations, total = {}, 0.0
    for case in ET.parse(junit).iter("testcase"):
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


if __name__ == "__main__":
    main(*sys.argv[1:])
