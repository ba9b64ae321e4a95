"""The project as a newcomer meets it: a README that fits on two screens, docs that build with
every link and page in place, commands in them that r8 accepts, the test tiers spelled once, and a
history whose subjects can be read."""

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_LINES, LINE_CHARS, SUBJECT_CHARS = 150, 120, 72
# The last commit before subjects were held to 72 characters: only later ones are checked.
SUBJECT_RULE_SINCE = "b556b77"


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(text: str) -> list[str]:
    """The commands of a page's ``bash`` blocks, comments stripped, continued lines joined."""
    out = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.split("#", 1)[0].strip():
                out.append(line.split("#", 1)[0].strip())
    return out


def pages() -> dict[str, str]:
    return {"README.md": (ROOT / "README.md").read_text(), **{p.name: p.read_text() for p in sorted(DOCS.glob("*.md"))}}


def test_the_readme_fits_on_two_screens():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= README_LINES, f"{len(lines)} lines"
    assert [n for n, line in enumerate(lines, 1) if len(line) > LINE_CHARS] == []
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Two commands", "## Your model, your data", "## r8's gates in your repository", "## Documentation"]
    assert not re.search(r"\b[0-9a-f]{7,40}\b", readme), "a commit hash: measurements belong in docs/measured/"


def test_every_link_in_the_readme_resolves():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    assert targets and [t for t in targets if not (ROOT / t).exists()] == []


def test_the_docs_build_strict(tmp_path):
    """``mkdocs build --strict``: every page in the nav, no broken link, the API pages rendered."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "quantize_job" in api and "best_row" in api and "Gate" in api


def test_every_r8_command_in_the_docs_is_one_r8_takes():
    """Each ``python -m r8 ...`` of a bash block parses with r8's own parser, and each ``nox -s``
    names a session of the noxfile; the README's example block also runs whole (``slow``)."""
    from r8.cli import build_parser

    sessions = {f.name for f in ast.parse((ROOT / "noxfile.py").read_text()).body if isinstance(f, ast.FunctionDef)}
    seen = 0
    for page, text in pages().items():
        for command in commands(text):
            for part in command.split("&&"):
                words = shlex.split(part)
                if words[:3] == ["python", "-m", "r8"]:
                    build_parser().parse_args(words[3:])  # exits 2 on an unknown command or option
                    seen += 1
                elif words[:2] == ["nox", "-s"]:
                    assert words[2] in sessions, f"{page}: {part}"
                    seen += 1
    assert seen >= 5


def test_every_plugin_option_in_the_docs_exists():
    from r8.pytest_plugin import pytest_addoption

    class Recorder:
        def __init__(self):
            self.names = set()

        def getgroup(self, *args):
            return self

        def addoption(self, name, **kwargs):
            self.names.add(name)

        def addini(self, name, *args, **kwargs):
            self.names.add(name)

    recorder = Recorder()
    pytest_addoption(recorder)
    mentioned = {m for text in pages().values() for m in re.findall(r"--r8-[a-z0-9-]+", text)}
    assert mentioned and mentioned <= recorder.names, mentioned - recorder.names
    plugin_page = (DOCS / "plugin.md").read_text()
    assert [n for n in recorder.names if n.startswith("--") and n not in plugin_page] == []


def test_the_tiers_are_spelled_once():
    """The tiers' marker expressions live in r8.pytest_plugin.TIERS; nox, tox, pytest.ini, CI and
    the suite name a tier (--r8-tier, or the ini key) instead of writing its expression again."""
    spelled = re.compile(r"not (slow|benchmark|nightly)")
    files = [ROOT / "pytest.ini", ROOT / "tox.ini", ROOT / "noxfile.py", *(ROOT / ".ci").iterdir(),
             *(ROOT / "suite").glob("*.py"), *(ROOT / "r8").rglob("*.py")]
    found = [f.relative_to(ROOT).as_posix() for f in files
             if f.is_file() and f.name != "test_project.py" and spelled.search(f.read_text())]
    assert found == ["r8/pytest_plugin.py"]


def subjects_since(base: str) -> list[str]:
    done = subprocess.run(["git", "log", "--format=%s", f"{base}..HEAD"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no git history here ({done.stderr.strip()[:200]})")
    return done.stdout.splitlines()


def test_commit_subjects_are_short():
    """From the rule on, each subject is at most 72 characters: the detail goes in the body."""
    subjects = subjects_since(SUBJECT_RULE_SINCE)
    assert [s for s in subjects if len(s) > SUBJECT_CHARS] == []
