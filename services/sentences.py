"""Every sentence the upload-request validation can say, once, in English and German.

A refusal line is ``<field path>: <sentence>``; the field path is a contract name and stays as
it is in both languages, the sentence is taken from :data:`SENTENCES`. The schema raises
:class:`Sentence` objects (a ``str`` whose value is the English text, so marshmallow, the
events' ``errors`` and every caller that reads English keep working) that carry their key and
parameters, so the German text of the very same refusal can be produced for ``message_de``.
No sentence is written anywhere else: a test checks that every key has both texts and that
the German ones contain no English sentence.

Templates use ``str.format`` placeholders (literal braces are doubled). A parameter may be a
``Sentence`` (rendered in the same language) or a dict keyed by language.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LANGUAGES = ("en", "de")

_EMAIL_LOCAL_CHARACTERS = "! # $ % & ' * + / = ? ^ _ ` {{ | }} ~ -"

# key: (English, German). The English texts are the contract's (tests and clients read them).
SENTENCES: dict[str, tuple[str, str]] = {
    # Any field
    "required": ("is required but missing.", "ist erforderlich, fehlt aber."),
    "null": ("must not be null.", "darf nicht null sein."),
    "not_valid": ("is not valid.", "ist ungültig."),
    "string": ("must be a string.", "muss ein Text (String) sein."),
    "utf8": ("must be UTF-8 text.", "muss UTF-8-Text sein."),
    "list": ("must be a list.", "muss eine Liste sein."),
    "object": ("must be an object.", "muss ein Objekt sein."),
    "unknown_field": (
        "is not part of the contract; remove it (see the README's message contract).",
        "gehört nicht zum Vertrag; bitte entfernen (siehe den Nachrichtenvertrag im README).",
    ),
    "max_length": ("must be at most {max} characters.", "darf höchstens {max} Zeichen lang sein."),
    "length": ("must be {min}–{max} characters.", "muss {min}–{max} Zeichen lang sein."),
    "one_of": ("must be one of: {choices}.", "muss einer dieser Werte sein: {choices}."),
    "blank": ("must not be empty or only spaces.", "darf nicht leer sein oder nur aus Leerzeichen bestehen."),
    "control_characters": (
        "must not contain control characters such as line breaks or tabs.",
        "darf keine Steuerzeichen wie Zeilenumbrüche oder Tabulatoren enthalten.",
    ),
    "date": (
        "must be a date in the form YYYY-MM-DD, e.g. 2026-03-01.",
        "muss ein Datum der Form JJJJ-MM-TT sein, z. B. 2026-03-01.",
    ),
    # Text that cannot be stored (values and field names)
    "bad_text_nul": (
        "contains characters that are not valid text (NUL character); send UTF-8 text without NUL characters.",
        "enthält Zeichen, die kein gültiger Text sind (NUL-Zeichen); bitte UTF-8-Text ohne NUL-Zeichen senden.",
    ),
    "bad_text_surrogate": (
        "contains characters that are not valid text (unpaired UTF-16 surrogate); send UTF-8 text.",
        "enthält Zeichen, die kein gültiger Text sind (ein ungepaartes UTF-16-Surrogat); bitte UTF-8-Text senden.",
    ),
    "bad_name_nul": (
        "is a field name that contains characters that are not valid text (NUL character); send UTF-8 text without NUL characters.",
        "ist ein Feldname mit Zeichen, die kein gültiger Text sind (NUL-Zeichen); bitte UTF-8-Text ohne NUL-Zeichen senden.",
    ),
    "bad_name_surrogate": (
        "is a field name that contains characters that are not valid text (unpaired UTF-16 surrogate); send UTF-8 text.",
        "ist ein Feldname mit Zeichen, die kein gültiger Text sind (ein ungepaartes UTF-16-Surrogat); bitte UTF-8-Text senden.",
    ),
    # The request as a whole
    "request_not_object": (
        "must be a JSON object (see the README's message contract).",
        "muss ein JSON-Objekt sein (siehe den Nachrichtenvertrag im README).",
    ),
    "request_unchecked": (
        "could not be checked (an internal error in personio-sync, logged for the operator); send it again later or report it.",
        "konnte nicht geprüft werden (ein interner Fehler in personio-sync, für den Betrieb protokolliert); bitte später erneut senden oder melden.",
    ),
    "one_more_problem": (
        "1 more problem is not listed; fix the ones above and send the request again.",
        "1 weiteres Problem ist nicht aufgeführt; bitte die obigen beheben und die Anfrage erneut senden.",
    ),
    "more_problems": (
        "{count} more problems are not listed; fix the ones above and send the request again.",
        "{count} weitere Probleme sind nicht aufgeführt; bitte die obigen beheben und die Anfrage erneut senden.",
    ),
    "request_id": (
        "must be 1–128 characters of letters, digits and . _ : -, starting with a letter or digit (a UUID is ideal).",
        "muss aus 1–128 Buchstaben, Ziffern und . _ : - bestehen und mit einem Buchstaben oder einer Ziffer beginnen (ideal ist eine UUID).",
    ),
    # Email (the problem is a clause of "is not a valid email address: …")
    "email": ("is not a valid email address: {problem}.", "ist keine gültige E-Mail-Adresse: {problem}."),
    "email_too_long": ("it is longer than {max} characters", "sie ist länger als {max} Zeichen"),
    "email_spaces": ("it must not contain spaces or control characters", "sie darf keine Leer- oder Steuerzeichen enthalten"),
    "email_one_at": (
        "it needs exactly one @ between the name and the domain, as in name@example.com",
        "sie braucht genau ein @ zwischen Name und Domain, wie in name@example.com",
    ),
    "email_local_length": ("the part before the @ must be 1–64 characters", "der Teil vor dem @ muss 1–64 Zeichen lang sein"),
    "email_local_characters": (
        f"the part before the @ may hold letters, digits and {_EMAIL_LOCAL_CHARACTERS} with single dots between them (no dot first or last)",
        f"der Teil vor dem @ darf Buchstaben, Ziffern und {_EMAIL_LOCAL_CHARACTERS} enthalten, mit einzelnen Punkten dazwischen (kein Punkt am Anfang oder Ende)",
    ),
    "email_domain_dot": (
        "the domain needs a dot and a top-level domain, as in example.com",
        "die Domain braucht einen Punkt und eine Top-Level-Domain, wie in example.com",
    ),
    "email_idna": (
        "the domain is not a valid internationalised domain name",
        "die Domain ist kein gültiger internationalisierter Domainname",
    ),
    "email_label": (
        "each part of the domain must be 1–63 letters, digits or inner hyphens",
        "jeder Teil der Domain muss aus 1–63 Buchstaben, Ziffern oder inneren Bindestrichen bestehen",
    ),
    "email_domain_too_long": ("the domain is longer than 253 characters", "die Domain ist länger als 253 Zeichen"),
    "email_tld": (
        "the domain must end in a top-level domain of letters, such as .com or .de",
        "die Domain muss auf eine Top-Level-Domain aus Buchstaben enden, etwa .com oder .de",
    ),
    # Documents
    "filename_plain": (
        "must be a plain file name such as cv.pdf, without a path, control characters or surrounding spaces.",
        "muss ein einfacher Dateiname wie cv.pdf sein, ohne Pfad, Steuerzeichen oder umgebende Leerzeichen.",
    ),
    "filename_extension": (
        "must end in a file type Personio accepts: {extensions}.",
        "muss auf einen Dateityp enden, den Personio annimmt: {extensions}.",
    ),
    "document_source": (
        "give exactly one of content_base64 (the file, base64) or url (an https link).",
        "bitte genau eines angeben: content_base64 (die Datei, Base64) oder url (ein https-Link).",
    ),
    "document_too_large": (
        "is larger than the {limit} allowed inline; send larger files by url.",
        "ist größer als die inline erlaubten {limit}; größere Dateien bitte per url senden.",
    ),
    "document_base64": (
        "is not valid base64 (standard alphabet, with padding).",
        "ist kein gültiges Base64 (Standardalphabet, mit Auffüllung).",
    ),
    "document_empty": ("is empty; Personio refuses empty files.", "ist leer; Personio lehnt leere Dateien ab."),
    "url_spaces": (
        "must not contain spaces or control characters; percent-encode them.",
        "darf keine Leer- oder Steuerzeichen enthalten; bitte prozentkodieren.",
    ),
    "url_invalid": (
        "is not a valid URL (check the host and port); send an https URL such as https://files.example.com/cv.pdf.",
        "ist keine gültige URL (Host und Port prüfen); bitte eine https-URL wie https://files.example.com/cv.pdf senden.",
    ),
    "url_https": ("must be an https URL.", "muss eine https-URL sein."),
    "url_credentials": (
        "must not contain a user name, password or port.",
        "darf keinen Benutzernamen, kein Passwort und keinen Port enthalten.",
    ),
    "url_host": (
        "is on a host that is not an allowed document host. "
        "The operator allows hosts with PERSONIO_SYNC_DOCUMENT_URL_HOSTS; otherwise send the file inline.",
        "liegt auf einem Host, von dem keine Dokumente geladen werden dürfen. "
        "Der Betrieb erlaubt Hosts mit PERSONIO_SYNC_DOCUMENT_URL_HOSTS; sonst die Datei inline senden.",
    ),
    # Candidate
    "too_many_tags": ("must have at most {max} tags.", "darf höchstens {max} Tags enthalten."),
    "too_many_documents": ("must have at most {max} documents.", "darf höchstens {max} Dokumente enthalten."),
    "application_date_future": (
        "lies in the future; Personio only accepts today or an earlier date.",
        "liegt in der Zukunft; Personio nimmt nur das heutige oder ein früheres Datum an.",
    ),
    "attributes_object": (
        "must be an object of Personio attribute names to string values.",
        "muss ein Objekt aus Personio-Attributnamen und Textwerten sein.",
    ),
    "attribute_misplaced": (
        "give {name} as candidate.{name}, not as an attribute.",
        "bitte {name} als candidate.{name} angeben, nicht als Attribut.",
    ),
    "attribute_unknown": (
        "is not a Personio attribute: use birthday, gender, available_from, salary_expectations "
        "or custom_attribute_<number> (the API name in Personio's attribute settings).",
        "ist kein Personio-Attribut: bitte birthday, gender, available_from, salary_expectations "
        "oder custom_attribute_<Nummer> verwenden (der API-Name in Personios Attribut-Einstellungen).",
    ),
    "birthday_future": (
        "lies in the future; use the candidate's date of birth.",
        "liegt in der Zukunft; bitte das Geburtsdatum des Kandidaten angeben.",
    ),
    "attribute_null": (
        "must not be null; leave the attribute out instead.",
        "darf nicht null sein; das Attribut stattdessen weglassen.",
    ),
    "attribute_not_finite": (
        "must be a finite number (not NaN or infinity), or text.",
        "muss eine endliche Zahl (nicht NaN oder unendlich) oder Text sein.",
    ),
    "attribute_number_too_long": (
        "is a number too long to send; send it as text of at most {max} characters.",
        "ist eine zu lange Zahl; bitte als Text mit höchstens {max} Zeichen senden.",
    ),
    "attribute_list": (
        "must be text, a number or true/false, not a list; Personio takes one value per attribute.",
        "muss Text, eine Zahl oder true/false sein, keine Liste; Personio nimmt einen Wert pro Attribut.",
    ),
    "attribute_object": (
        "must be text, a number or true/false, not an object; Personio takes one value per attribute.",
        "muss Text, eine Zahl oder true/false sein, kein Objekt; Personio nimmt einen Wert pro Attribut.",
    ),
    "available_from_empty": (
        'must not be empty; give a date (YYYY-MM-DD) or a text such as "As soon as possible".',
        "darf nicht leer sein; bitte ein Datum (JJJJ-MM-TT) oder einen Text wie „ab sofort“ angeben.",
    ),
    "available_from_too_long": (
        "must be at most {max} characters (Personio's limit).",
        "darf höchstens {max} Zeichen lang sein (Personios Grenze).",
    ),
    "available_from_one_line": (
        "must be one line, without control characters such as line breaks or tabs.",
        "muss eine Zeile sein, ohne Steuerzeichen wie Zeilenumbrüche oder Tabulatoren.",
    ),
    "available_from_no_such_day": (
        'is written as a date (YYYY-MM-DD) but no such day exists; give a real date or a text such as "As soon as possible".',
        "ist als Datum (JJJJ-MM-TT) geschrieben, aber diesen Tag gibt es nicht; bitte ein echtes Datum oder einen Text wie „ab sofort“ angeben.",
    ),
    # A text that is not in this table (see sentence_for)
    "unlisted": ("{text}", "ist ungültig."),
    # Phase (the English texts are personio.phases' fixes; a test keeps them equal)
    "phase_object": (
        'must be an object such as {{"type": "system", "id": "offer"}} or {{"type": "custom", "id": 42}}.',
        'muss ein Objekt wie {{"type": "system", "id": "offer"}} oder {{"type": "custom", "id": 42}} sein.',
    ),
    "phase_system_id": (
        "for a system phase it must be one of: {choices}.",
        "für eine Systemphase muss sie einer dieser Werte sein: {choices}.",
    ),
    "phase_custom_id": (
        "for a custom phase it must be the phase's number from Personio (Settings → Recruiting → Phases), a whole number such as 42.",
        "für eine eigene Phase muss sie die Nummer der Phase aus Personio sein (Einstellungen → Recruiting → Phasen), eine ganze Zahl wie 42.",
    ),
}


class Sentence(str):
    """One validation sentence: the ``str`` value is its English text; ``text("de")`` the German.

    Immutable once made; its parameters are bound at creation, so marshmallow's
    ``message.format(input=…)`` returns it unchanged (and never quotes a submitted value).
    """

    key: str
    params: dict[str, Any]

    def __new__(cls, key: str, **params: Any) -> Sentence:
        english, _ = SENTENCES[key]
        sentence = super().__new__(cls, _fill(english, params, "en"))
        sentence.key = key
        sentence.params = params
        return sentence

    def text(self, language: str) -> str:
        """The sentence in ``language`` ("en" or "de"; anything else is English)."""
        if language != "de":
            return str.__str__(self)
        return _fill(SENTENCES[self.key][1], self.params, "de")

    @property
    def german(self) -> str:
        return self.text("de")

    def format(self, *args: object, **kwargs: object) -> Sentence:  # noqa: ARG002 - bound already
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make, (self.key, self.params))

    def __copy__(self) -> Sentence:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Sentence:
        return self


def _make(key: str, params: dict[str, Any]) -> Sentence:
    return Sentence(key, **params)


def _fill(template: str, params: dict[str, Any], language: str) -> str:
    values: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, Sentence):
            value = value.text(language)
        elif isinstance(value, dict):
            value = value.get(language, value.get("en", ""))
        values[name] = value
    return template.format(**values)


def choices(values: Iterable[str]) -> str:
    """A list of allowed values as both languages show them (they are contract values)."""
    return ", ".join(values)


# The sentences without parameters, by their English text.
_BY_ENGLISH = {
    english.format(): key for key, (english, _) in SENTENCES.items() if "{" not in english.replace("{{", "").replace("}}", "")
}


def sentence_for(message: Any) -> Sentence:
    """``message`` as a Sentence: itself, or the fixed sentence with the same English text.

    A text that is not in the table (a library default nobody replaced; a test keeps this from
    happening) keeps its English and says in German only that the field is not valid.
    """
    if isinstance(message, Sentence):
        return message
    key = _BY_ENGLISH.get(str(message))
    return Sentence(key) if key is not None else Sentence("unlisted", text=str(message))


__all__ = ["LANGUAGES", "SENTENCES", "Sentence", "choices", "sentence_for"]
