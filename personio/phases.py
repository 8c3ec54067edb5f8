"""Personio application phases: the one place that knows what a valid ``phase`` is.

Personio's application endpoint takes ``phase: {"type": "system" | "custom", "id": …}``
(OpenAPI ``submit_application.phase``). A system phase's id is one of five names; a custom
phase's id is the integer Personio shows under Settings → Recruiting → Phases. Personio files
an application with an unknown custom phase under "unassigned" without saying so, and refuses
an unknown system phase (``errors.phase-validation.invalid-system-phase``), so both are checked
here before anything is stored or sent.

Three places may set a phase (the request, the project link, the connection); each stores the
canonical form :func:`canonical_phase` returns, which is also exactly what is sent.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypedDict

__all__ = [
    "PHASE_TYPES",
    "SYSTEM_PHASES",
    "Phase",
    "PhaseInvalid",
    "canonical_phase",
    "describe_phase",
    "parse_phase",
]

PHASE_TYPES = ("system", "custom")
SYSTEM_PHASES = ("unassigned", "rejected", "withdrawn", "offer", "accepted")
# Custom phase ids are Personio database ids; the bound keeps them exact in JSON everywhere.
MAX_CUSTOM_PHASE_ID = 2**53 - 1
_DIGITS = re.compile(r"[0-9]{1,16}")

SYSTEM_ID_FIX = "for a system phase it must be one of: " + ", ".join(SYSTEM_PHASES) + "."
CUSTOM_ID_FIX = (
    "for a custom phase it must be the phase's number from Personio "
    "(Settings → Recruiting → Phases), a whole number such as 42."
)
TEXT_FORM = "system:<" + "|".join(SYSTEM_PHASES) + "> or custom:<number>, e.g. system:offer or custom:42"


class Phase(TypedDict):
    type: Literal["system", "custom"]
    id: str | int


class PhaseInvalid(ValueError):
    """A phase that Personio would not take; ``part`` is ``type``, ``id`` or ``""`` (the whole)."""

    def __init__(self, part: str, fix: str) -> None:
        self.part = part
        self.fix = fix
        super().__init__(fix)


def _custom_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 0 < number <= MAX_CUSTOM_PHASE_ID else None


def canonical_phase(kind: Any, phase_id: Any) -> Phase:
    """The phase as Personio expects it: a system id as its name, a custom id as an integer.

    Raises:
        PhaseInvalid: the type or the id is not one Personio accepts (``part`` says which).
    """
    if kind == "system":
        if isinstance(phase_id, str) and phase_id in SYSTEM_PHASES:
            return {"type": "system", "id": phase_id}
        raise PhaseInvalid("id", SYSTEM_ID_FIX)
    if kind == "custom":
        number = _custom_id(phase_id)
        if number is None:
            raise PhaseInvalid("id", CUSTOM_ID_FIX)
        return {"type": "custom", "id": number}
    raise PhaseInvalid("type", "must be one of: " + ", ".join(PHASE_TYPES) + ".")


def parse_phase(text: str) -> Phase:
    """An admin's phase as typed (CLI, connect): ``system:offer``, ``custom:42``; the type may be
    left out when the id says it (``offer``, ``42``). Case and surrounding spaces do not matter.

    Raises:
        PhaseInvalid: with a fix that shows the accepted form.
    """
    cleaned = text.strip().lower() if isinstance(text, str) else ""
    kind, separator, phase_id = cleaned.partition(":")
    if not separator:
        phase_id = kind
        kind = "custom" if _DIGITS.fullmatch(phase_id) else "system"
    try:
        return canonical_phase(kind.strip(), phase_id.strip())
    except PhaseInvalid as error:
        raise PhaseInvalid(error.part, f"{error.fix} Write it as {TEXT_FORM}.") from None


def describe_phase(phase: Any) -> str | None:
    """A stored phase in its text form (``system:offer``), or None when there is none."""
    if not isinstance(phase, dict) or "type" not in phase or "id" not in phase:
        return None
    return f"{phase['type']}:{phase['id']}"
