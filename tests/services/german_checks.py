"""Test helpers: find English validation sentences in a German text (services.sentences)."""

from __future__ import annotations

import string

from services.sentences import SENTENCES


def literal_parts(template: str) -> list[str]:
    """The text of a sentence template between its placeholders (literal braces undoubled)."""
    return [literal for literal, _, _, _ in string.Formatter().parse(template)]


_GERMAN = " ".join(part for _, german in SENTENCES.values() for part in literal_parts(german))
# The English text between the placeholders of every sentence: none may appear in a German text
# (examples both languages show, such as {"type": "system", "id": "offer"}, aside).
ENGLISH_FRAGMENTS = sorted(
    {
        part.strip(" .:;,")
        for key, (english, _) in SENTENCES.items()
        if key != "unlisted"
        for part in literal_parts(english)
        if len(part.strip(" .:;,")) >= 12 and part.strip(" .:;,") not in _GERMAN
    }
)


def english_in(text: str) -> list[str]:
    """The English validation fragments found in ``text`` (a German message)."""
    return [fragment for fragment in ENGLISH_FRAGMENTS if fragment in text]
