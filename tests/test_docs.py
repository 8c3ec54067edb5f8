"""References in code and docs point into this repository.

Every Markdown file a tracked file names (``README.md``, ``docs/reliability.md``, …) must exist
here, so a comment never sends the reader to a document they cannot open; the design notes the
code relies on live in ``docs/``. Numbered rules of an outside style guide are not cited either:
a comment states its reason itself.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN_NAME = re.compile(r"(?<![\w./-])([\w./-]*[\w-]\.md)\b")
STYLE_RULE = re.compile("style" + r"\s+rule", re.IGNORECASE)


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # binary, or deleted in the working tree


def _exists(name: str, mentioned_in: Path) -> bool:
    name = name.removeprefix("./")
    return (ROOT / name).is_file() or (mentioned_in.parent / name).is_file()


def _lines_outside_docs() -> Iterator[tuple[Path, Path, int, str]]:
    """(path, path relative to the root, line number, line) of every tracked text file outside docs/."""
    for path in _tracked_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "docs":
            continue
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            yield path, relative, number, line


def test_every_markdown_file_mentioned_outside_docs_exists() -> None:
    missing = [
        f"{relative}:{number}: {name}"
        for path, relative, number, line in _lines_outside_docs()
        for name in MARKDOWN_NAME.findall(line)
        if not _exists(name, path)
    ]
    assert not missing, "Markdown files named but not in the repository:\n" + "\n".join(missing)


def test_no_numbered_style_rules_are_cited() -> None:
    cited = [
        f"{relative}:{number}: {line.strip()}"
        for _, relative, number, line in _lines_outside_docs()
        if STYLE_RULE.search(line)
    ]
    assert not cited, "say why instead of citing a numbered rule of a style guide:\n" + "\n".join(cited)


def test_the_design_notes_exist() -> None:
    for name in ("docs/personio.md", "docs/reliability.md"):
        assert (ROOT / name).is_file(), name
