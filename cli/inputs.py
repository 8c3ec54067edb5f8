"""Reading the files the commands are given: one wording for a file that cannot be read."""

from __future__ import annotations


def unreadable_file(path: str, error: OSError | UnicodeDecodeError, *, save_as: str) -> str:
    """The line to print when ``path`` cannot be opened or is not UTF-8 (``save_as``: the format it should be in)."""
    if isinstance(error, UnicodeDecodeError):
        return f"{path} is not UTF-8 text (byte {error.start}); save it as {save_as}."
    return f"cannot read {path}: {error.strerror or error}"
