"""services.sentences: every validation sentence exists in English and German, and German
refusals carry German sentences only (field paths stay as they are).

The whole bad-request corpus is checked here at the validation level; test_bad_requests.py and
test_intake_properties.py check the stored ``message_de`` of what ``receive_upload`` refused.
"""

from __future__ import annotations

import copy
import pickle
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from marshmallow import ValidationError

from personio.phases import CUSTOM_ID_FIX, PHASE_TYPES, SYSTEM_ID_FIX, PhaseInvalid, canonical_phase
from services.schemas import (
    UploadRequestInvalid,
    email_problem,
    format_size,
    load_upload_request,
    unchecked_request,
)
from services.sentences import SENTENCES, Sentence, sentence_for
from tests.services.bad_requests import INVALID, POLICY, REJECTED, cases
from tests.services.german_checks import ENGLISH_FRAGMENTS, english_in, literal_parts
from tests.services.test_intake_properties import payloads

# Words of English that never belong in a German sentence (contract names such as
# content_base64 or true/false aside).
ENGLISH_WORDS = {"the", "and", "is", "not", "must", "be", "please", "with", "of", "to", "for", "has", "a", "or", "give", "send", "must", "only"}


def test_the_fragments_are_many() -> None:
    assert len(ENGLISH_FRAGMENTS) >= len(SENTENCES) - 5


@pytest.mark.parametrize("key", sorted(SENTENCES))
def test_every_sentence_has_a_german_text_of_its_own(key: str) -> None:
    english, german = SENTENCES[key]
    assert english.strip() and german.strip()
    if key == "unlisted":
        return
    assert english != german
    names = {name for _, name, _, _ in string.Formatter().parse(english) if name}
    assert names == {name for _, name, _, _ in string.Formatter().parse(german) if name}
    literal = " ".join(literal_parts(german))
    words = {w.lower() for w in re.findall(r"[A-Za-zÄÖÜäöüß]+", re.sub(r"[a-z_]+_[a-z0-9_]+|true/false|<[^>]*>", " ", literal))}
    assert not words & ENGLISH_WORDS, f"{key}: English words in the German text: {sorted(words & ENGLISH_WORDS)}"
    assert not english_in(german), english_in(german)


def test_a_sentence_is_its_english_text_and_renders_german() -> None:
    sentence = Sentence("length", min=1, max=255)

    assert sentence == "must be 1–255 characters."
    assert sentence.text("de") == sentence.german == "muss 1–255 Zeichen lang sein."
    assert sentence.text("fr") == "must be 1–255 characters."


def test_a_sentence_parameter_renders_in_the_same_language() -> None:
    sentence = Sentence("email", problem=email_problem("zq@localhost"))

    assert sentence == "is not a valid email address: the domain needs a dot and a top-level domain, as in example.com."
    assert sentence.german == "ist keine gültige E-Mail-Adresse: die Domain braucht einen Punkt und eine Top-Level-Domain, wie in example.com."


def test_per_language_parameters() -> None:
    sentence = Sentence("document_too_large", limit={"en": format_size(1536 * 1024), "de": format_size(1536 * 1024, "de")})

    assert "the 1.5 MiB allowed" in sentence
    assert "die inline erlaubten 1,5 MiB" in sentence.german
    assert format_size(300, "de") == "300 Bytes"


def test_a_sentence_survives_marshmallow_copy_and_pickle() -> None:
    sentence = Sentence("one_of", choices="a, b")

    assert sentence.format(input="quoted?") is sentence  # marshmallow formats messages; nothing is quoted
    assert copy.deepcopy(sentence) is sentence and copy.copy(sentence) is sentence
    again = pickle.loads(pickle.dumps(sentence))
    assert (again, again.key, again.german) == (sentence, "one_of", sentence.german)
    assert ValidationError(sentence).messages == [sentence]


def test_plain_english_lines_get_their_german_from_the_table() -> None:
    invalid = UploadRequestInvalid(["candidate.email: is required but missing.", "x: something nobody wrote down."], None)

    assert invalid.errors_de == ["candidate.email: ist erforderlich, fehlt aber.", "x: ist ungültig."]
    assert [s.key for s in invalid.sentences] == ["required", "unlisted"]


def test_details_are_per_language() -> None:
    invalid = unchecked_request("r-1")

    assert invalid.details["en"] == "request: " + SENTENCES["request_unchecked"][0]
    assert invalid.details["de"] == "request: " + SENTENCES["request_unchecked"][1]


def test_phase_sentences_are_personio_phases_fixes() -> None:
    """The phase rules live in personio.phases; their English must stay the table's."""
    for kind, phase_id, key in (("system", "nope", "phase_system_id"), ("custom", "x", "phase_custom_id"), ("other", 1, "one_of")):
        with pytest.raises(PhaseInvalid) as caught:
            canonical_phase(kind, phase_id)
        with pytest.raises(UploadRequestInvalid) as refused:
            load_upload_request(_request(phase={"type": kind, "id": phase_id}), POLICY)
        [sentence] = refused.value.sentences
        assert (sentence.key, sentence) == (key, caught.value.fix)
    assert SYSTEM_ID_FIX in SENTENCES["phase_system_id"][0].format(choices=SYSTEM_ID_FIX.split(": ", 1)[1][:-1])
    assert CUSTOM_ID_FIX == SENTENCES["phase_custom_id"][0]
    assert PHASE_TYPES == ("system", "custom")


def _request(**extra: object) -> dict[str, object]:
    return {
        "request_id": "s-1",
        "account_id": "acct",
        "project_id": "proj",
        "candidate": {"first_name": "Zelinda", "last_name": "Quarterman", "email": "zq@quarterman-mail.net"},
        **extra,
    }


@pytest.mark.parametrize("case", [c for c in cases() if c.expect in (REJECTED, INVALID)], ids=lambda c: c.name)
def test_every_refusal_of_the_corpus_is_german_in_german(case: object) -> None:
    with pytest.raises(UploadRequestInvalid) as caught:
        load_upload_request(case.payload, POLICY)  # type: ignore[attr-defined]

    invalid = caught.value
    assert len(invalid.errors) == len(invalid.errors_de) == len(invalid.sentences)
    for english, german, sentence in zip(invalid.errors, invalid.errors_de, invalid.sentences, strict=True):
        assert sentence.key != "unlisted", f"not in services.sentences: {english}"
        field = english.partition(": ")[0]
        assert english == f"{field}: {sentence}"
        assert german == f"{field}: {sentence.german}"  # the field path stays, the sentence is German
        assert not english_in(german), (german, english_in(german))


def test_no_sentence_text_is_written_twice() -> None:
    """Every validation text comes from the table: no English sentence in the schema module."""
    import inspect

    import services.schemas as schemas

    source = inspect.getsource(schemas)
    for fragment in ENGLISH_FRAGMENTS:
        if len(fragment) >= 20:
            assert fragment not in source, f"{fragment!r} is written out in services/schemas.py"
    assert sentence_for("is required but missing.").key == "required"


def test_the_count_of_unlisted_problems_in_both_languages() -> None:
    from services.schemas import MAX_ERRORS

    for extra, english, german in ((1, "1 more problem is not", "1 weiteres Problem ist nicht"), (3, "3 more problems are not", "3 weitere Probleme sind nicht")):
        payload = _request(candidate={"first_name": "Zelinda", "last_name": "Quarterman", "email": "zq@quarterman-mail.net", "tags": [""] * (MAX_ERRORS + extra)})
        with pytest.raises(UploadRequestInvalid) as caught:
            load_upload_request(payload, POLICY)
        assert caught.value.errors[-1].startswith(f"request: {english}")
        assert caught.value.errors_de[-1].startswith(f"request: {german}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=payloads)
def test_any_refusal_of_any_payload_is_a_table_sentence_in_german(payload: object) -> None:
    """Whatever JSON arrives (the property test's payloads), each refusal is in the table, never
    a library default, and its German line carries no English sentence."""
    try:
        load_upload_request(payload, POLICY)
    except UploadRequestInvalid as invalid:
        unlisted = [line for line, sentence in zip(invalid.errors, invalid.sentences, strict=True) if sentence.key == "unlisted"]
        assert not unlisted, unlisted
        german = " ".join(invalid.errors_de)
        assert not english_in(german), english_in(german)
