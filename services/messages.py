"""Recruiter- and admin-readable messages, in English and German.

Keys are reason codes: Personio's own (``errors.…``, ``feature.…``) and ours
(``personio-sync.…``, ``health.…``, ``connect.…``). Texts may use ``{field}``,
``{job_position_id}``, ``{filename}`` and similar placeholders; a missing placeholder is
left out rather than raising, so a message can always be shown.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

LANGUAGES = ("en", "de")

_MENU_API_EN = "Personio → Settings → Integrations → API credentials → Recruiting API key"
_MENU_API_DE = "Personio → Einstellungen → Integrationen → API-Zugriffsdaten → Recruiting-API-Schlüssel"
_MENU_FEED_EN = "Personio → Settings → Recruiting → Career page → Activations → Enable XML feed"
_MENU_FEED_DE = "Personio → Einstellungen → Recruiting → Karriereseite → Aktivierungen → XML-Schnittstelle aktivieren"
_MENU_CHANNEL_EN = "Personio → Settings → Recruiting → Channels"
_MENU_CHANNEL_DE = "Personio → Einstellungen → Recruiting → Kanäle"
_MENU_PHASES_EN = "Personio → Settings → Recruiting → Phases"
_MENU_PHASES_DE = "Personio → Einstellungen → Recruiting → Phasen"

MESSAGES: dict[str, tuple[str, str]] = {
    # Outcomes
    "personio-sync.submitted": (
        "The candidate is in Personio as an applicant for job {job_position_id}.",
        "Der Kandidat ist in Personio als Bewerber für die Stelle {job_position_id} angelegt.",
    ),
    "personio-sync.submitted-without-channel": (
        "The candidate is in Personio for job {job_position_id}, but without the channel attribution: the connection's channel ID is unknown to Personio ({menu_channel_en}).",
        "Der Kandidat ist in Personio für die Stelle {job_position_id} angelegt, aber ohne Kanal-Zuordnung: Die Channel-ID der Verbindung kennt Personio nicht ({menu_channel_de}).",
    ),
    "errors.applicant-already-exists": (
        "This candidate has already applied to this job in Personio (Personio accepts one application per email address and job).",
        "Dieser Kandidat hat sich in Personio bereits auf diese Stelle beworben (Personio erlaubt eine Bewerbung pro E-Mail-Adresse und Stelle).",
    ),
    "personio-sync.already-sent": (
        "This candidate was already sent to this job in Personio by an earlier upload; nothing was sent again.",
        "Dieser Kandidat wurde bereits mit einem früheren Upload an diese Stelle in Personio übertragen; es wurde nichts erneut gesendet.",
    ),
    "personio-sync.retries-exhausted": (
        "The upload was given up after {attempts} attempts: {cause}. Please try again later.",
        "Der Upload wurde nach {attempts} Versuchen abgebrochen: {cause}. Bitte später erneut versuchen.",
    ),
    "personio-sync.backfill-cancelled": (
        "The backfill this upload belonged to was cancelled before the upload started; nothing of it was sent to Personio. Upload the candidate again if it is still wanted.",
        "Der Backfill, zu dem dieser Upload gehörte, wurde abgebrochen, bevor der Upload begann; davon wurde nichts an Personio gesendet. Den Kandidaten bei Bedarf erneut hochladen.",
    ),
    "personio-sync.intake-failed": (
        "The upload request could not be recorded because of an internal error; nothing was sent to Personio. Please upload the candidate again; if it keeps failing, tell the operators.",
        "Die Upload-Anfrage konnte wegen eines internen Fehlers nicht erfasst werden; an Personio wurde nichts gesendet. Bitte den Kandidaten erneut hochladen; tritt der Fehler wieder auf, bitte den Betrieb informieren.",
    ),
    "personio-sync.forgotten": (
        "The candidate's data was erased on request (personio-sync forget) before the upload finished; it was stopped. Anything already in Personio stays there and has to be erased in Personio.",
        "Die Daten des Kandidaten wurden auf Anfrage gelöscht (personio-sync forget), bevor der Upload abgeschlossen war; er wurde gestoppt. Was schon in Personio ist, bleibt dort und muss in Personio gelöscht werden.",
    ),
    # Our own checks
    "personio-sync.invalid-request": (
        "The upload request is incomplete or invalid: {details}",
        "Die Upload-Anfrage ist unvollständig oder ungültig: {details}",
    ),
    "personio-sync.connection-not-found": (
        "This account is not connected to Personio yet. An admin has to connect it first (company ID, access token, domain).",
        "Dieses Konto ist noch nicht mit Personio verbunden. Ein Admin muss die Verbindung zuerst anlegen (Unternehmens-ID, Zugriffs-Token, Domain).",
    ),
    "personio-sync.project-not-linked": (
        "This project is not linked to a Personio job. Link the project to a job, then upload again.",
        "Dieses Projekt ist mit keiner Personio-Stelle verknüpft. Bitte das Projekt mit einer Stelle verknüpfen und erneut hochladen.",
    ),
    "personio-sync.job-not-published": (
        "The linked Personio job {job_position_id} is no longer published. Link the project to an open job, then upload again.",
        "Die verknüpfte Personio-Stelle {job_position_id} ist nicht mehr veröffentlicht. Bitte das Projekt mit einer offenen Stelle verknüpfen und erneut hochladen.",
    ),
    "personio-sync.document-url-forbidden": (
        "Document '{filename}' is given by a URL whose host is not allowed. Send it inline (base64) or ask the operator to allow its host.",
        "Das Dokument '{filename}' kommt von einer URL, deren Host nicht erlaubt ist. Bitte inline (Base64) senden oder den Betreiber bitten, den Host freizugeben.",
    ),
    "personio-sync.document-fetch-failed": (
        "Document '{filename}' could not be downloaded from its URL ({detail}).",
        "Das Dokument '{filename}' konnte nicht von seiner URL geladen werden ({detail}).",
    ),
    "personio-sync.document-too-large": (
        "Document '{filename}' is larger than the {limit} allowed. Personio accepts files up to 20 MB.",
        "Das Dokument '{filename}' ist größer als die erlaubten {limit}. Personio nimmt Dateien bis 20 MB an.",
    ),
    # Personio's reasons
    "errors.attribute-validation.unknown": (
        "Personio does not know the attribute '{field}'. Check the attribute's API name in Personio → Settings → Recruiting → Attributes.",
        "Personio kennt das Attribut '{field}' nicht. Bitte den API-Namen in Personio → Einstellungen → Recruiting → Attribute prüfen.",
    ),
    "errors.attribute-validation.required-attribute": (
        "Personio requires '{field}', but it is missing or empty.",
        "Personio verlangt '{field}', das Feld fehlt oder ist leer.",
    ),
    "errors.attribute-validation.invalid-date-format": (
        "'{field}' is not a valid date for Personio; use YYYY-MM-DD.",
        "'{field}' ist für Personio kein gültiges Datum; bitte JJJJ-MM-TT verwenden.",
    ),
    "errors.attribute-validation.invalid-email-format": (
        "Personio considers the candidate's email address invalid.",
        "Personio hält die E-Mail-Adresse des Kandidaten für ungültig.",
    ),
    "errors.attribute-validation.invalid-type": (
        "Personio does not support the type of attribute '{field}'.",
        "Personio unterstützt den Typ des Attributs '{field}' nicht.",
    ),
    "errors.attribute-validation.unknown-attribute-option": (
        "The value of '{field}' is not one of the options configured in Personio.",
        "Der Wert von '{field}' ist keine der in Personio eingerichteten Optionen.",
    ),
    "errors.date-validation.date-in-the-future": (
        "The application date lies in the future; Personio does not allow that.",
        "Das Bewerbungsdatum liegt in der Zukunft; das lässt Personio nicht zu.",
    ),
    "errors.phase-validation.invalid-system-phase": (
        "Personio does not support the requested application phase. Check the phase of the upload request, the project link or "
        "the connection: a system phase is one of unassigned, rejected, withdrawn, offer, accepted; a custom phase is a number "
        "from {menu_phases_en}.",
        "Personio unterstützt die angegebene Bewerbungsphase nicht. Bitte die Phase der Upload-Anfrage, der Projekt-Verknüpfung "
        "oder der Verbindung prüfen: Eine Systemphase ist unassigned, rejected, withdrawn, offer oder accepted; eine eigene Phase "
        "ist eine Nummer aus {menu_phases_de}.",
    ),
    "errors.file-validation.file-not-exists": (
        "Personio could not find the uploaded documents of this candidate, even after they were uploaded again; nothing was created. Please upload the candidate again; if it keeps failing, tell the operators.{said}",
        "Personio hat die hochgeladenen Dokumente dieses Kandidaten auch nach erneutem Hochladen nicht gefunden; es wurde nichts angelegt. Bitte den Kandidaten erneut hochladen; tritt der Fehler wieder auf, bitte den Betrieb informieren.{said}",
    ),
    "errors.file-validation.unknown-file-category": (
        "Personio does not accept the document category given for {document}.",
        "Personio akzeptiert die angegebene Dokumentkategorie von {document} nicht.",
    ),
    "errors.invalid-file-type": (
        "Personio does not accept the file type of {document}. Allowed: PDF, Word, Excel, PowerPoint, OpenDocument, images, text, archives, videos.",
        "Personio akzeptiert den Dateityp von {document} nicht. Erlaubt: PDF, Word, Excel, PowerPoint, OpenDocument, Bilder, Text, Archive, Videos.",
    ),
    "errors.file-too-big": (
        "The size of {document} exceeds Personio's limit of 20 MB.",
        "Die Größe von {document} überschreitet Personios Grenze von 20 MB.",
    ),
    "errors.posting-validation.posting-not-found": (
        "Personio could not find the job posting, or it does not belong to the connection's channel.",
        "Personio hat die Stellenausschreibung nicht gefunden, oder sie gehört nicht zum Kanal der Verbindung.",
    ),
    "errors.posting-validation.channel-not-found": (
        "Personio does not know the connection's channel ID. An admin should copy the right ID from {menu_channel_en}.",
        "Personio kennt die Channel-ID der Verbindung nicht. Ein Admin sollte die richtige ID aus {menu_channel_de} übernehmen.",
    ),
    "errors.job-position.not-published": (
        "The Personio job {job_position_id} is not published, so it takes no applications. Link the project to an open job.",
        "Die Personio-Stelle {job_position_id} ist nicht veröffentlicht und nimmt keine Bewerbungen an. Bitte das Projekt mit einer offenen Stelle verknüpfen.",
    ),
    "feature.recruiting.disabled": (
        "This Personio account has no recruiting module, so candidates cannot be uploaded. The company's Personio admin has to book it.",
        "Dieses Personio-Konto hat kein Recruiting-Modul, daher können keine Kandidaten hochgeladen werden. Der Personio-Admin des Unternehmens muss es buchen.",
    ),
    "feature.public-api.disabled": (
        "This Personio account has no access to the recruiting API (a plan feature). The company's Personio admin has to enable it.",
        "Dieses Personio-Konto hat keinen Zugriff auf die Recruiting-API (eine Tariffunktion). Der Personio-Admin des Unternehmens muss sie freischalten.",
    ),
    "personio.unauthorized": (
        "Personio did not accept the company ID and access token. An admin should copy both again from {menu_api_en}.",
        "Personio hat Unternehmens-ID und Zugriffs-Token nicht akzeptiert. Ein Admin sollte beide erneut aus {menu_api_de} kopieren.",
    ),
    "personio.rate_limited_sustained": (
        "Personio has answered every request of this company with 'too many requests' for longer than the alert threshold; uploads wait for Personio's limit.",
        "Personio beantwortet jede Anfrage dieses Unternehmens länger als die Alarmschwelle mit „zu viele Anfragen“; Uploads warten auf Personios Anfragegrenze.",
    ),
    "personio.rate_limited": (
        "Personio's limit of requests per minute for this company was reached; the upload continues automatically.",
        "Personios Grenze an Anfragen pro Minute für dieses Unternehmen wurde erreicht; der Upload wird automatisch fortgesetzt.",
    ),
    "personio.server_error": (
        "Personio had a temporary problem; the upload is retried automatically.",
        "Personio hatte ein vorübergehendes Problem; der Upload wird automatisch wiederholt.",
    ),
    "personio.unreachable": (
        "Personio could not be reached; the upload is retried automatically.",
        "Personio war nicht erreichbar; der Upload wird automatisch wiederholt.",
    ),
    "personio.timeout": (
        "Personio did not answer in time; the upload is retried automatically.",
        "Personio hat nicht rechtzeitig geantwortet; der Upload wird automatisch wiederholt.",
    ),
    "personio.bad_request": (
        "Personio refused the request ({status}) without a reason code.{said}",
        "Personio hat die Anfrage ({status}) ohne Fehlercode abgelehnt.{said}",
    ),
    "personio.http_error": (
        "Personio refused the request with an unexpected answer ({status}).{said}",
        "Personio hat die Anfrage mit einer unerwarteten Antwort ({status}) abgelehnt.{said}",
    ),
    "personio.error": (
        "Personio's answer could not be read, so the upload was stopped. Please upload the candidate again; if it keeps failing, tell the operators.",
        "Die Antwort von Personio war nicht lesbar, daher wurde der Upload abgebrochen. Bitte den Kandidaten erneut hochladen; tritt der Fehler wieder auf, bitte den Betrieb informieren.",
    ),
    "personio.unprocessable": (
        "Personio refused the request ({status}).{said}",
        "Personio hat die Anfrage ({status}) abgelehnt.{said}",
    ),
    "personio-sync.waiting-rate-limit": (
        "Waiting for Personio's limit: Personio has answered every request of this company with 'too many requests' since {since}. The upload is kept and continues by itself as soon as Personio accepts requests again; nothing needs to be sent again.",
        "Wartet auf Personios Anfragegrenze: Personio beantwortet seit {since} jede Anfrage dieses Unternehmens mit „zu viele Anfragen“. Der Upload bleibt erhalten und geht von selbst weiter, sobald Personio wieder Anfragen annimmt; nichts muss erneut gesendet werden.",
    ),
    "personio-sync.held": (
        "The upload waits until the Personio connection works again: {health}",
        "Der Upload wartet, bis die Personio-Verbindung wieder funktioniert: {health}",
    ),
    # Connecting: the admin's inputs
    "connect.company_id": (
        "The company ID must be the number shown next to the access token in {menu_api_en} (got {value}).",
        "Die Unternehmens-ID ist die Zahl neben dem Zugriffs-Token unter {menu_api_de} (angegeben: {value}).",
    ),
    "connect.access_token": (
        "The access token is empty or contains spaces. Copy it again from {menu_api_en}.",
        "Der Zugriffs-Token ist leer oder enthält Leerzeichen. Bitte erneut aus {menu_api_de} kopieren.",
    ),
    "connect.channel_id": (
        "The channel ID must be a positive number from {menu_channel_en}, or left empty (got {value}).",
        "Die Channel-ID muss eine positive Zahl aus {menu_channel_de} sein oder leer bleiben (angegeben: {value}).",
    ),
    "connect.channel_unverified": (
        "Personio cannot check a channel ID in advance; it is verified with the first upload. If Personio refuses it, candidates are uploaded without channel and the connection says so.",
        "Personio kann eine Channel-ID nicht vorab prüfen; sie wird beim ersten Upload geprüft. Lehnt Personio sie ab, werden Kandidaten ohne Kanal hochgeladen und die Verbindung zeigt das an.",
    ),
    "connect.feed_language": (
        "The feed language must be one of de, en, fr, es, nl, it, pt (got {value}).",
        "Die Feed-Sprache muss de, en, fr, es, nl, it oder pt sein (angegeben: {value}).",
    ),
    "connect.phase": (
        "The phase must be a system phase (system:unassigned, system:rejected, system:withdrawn, system:offer, system:accepted) "
        "or custom:<number> with the number of a custom phase from {menu_phases_en}, e.g. custom:42; leave it empty for the "
        "initial phase of the job's category (got {value}).",
        "Die Phase muss eine Systemphase (system:unassigned, system:rejected, system:withdrawn, system:offer, system:accepted) "
        "oder custom:<Nummer> mit der Nummer einer eigenen Phase aus {menu_phases_de} sein, z. B. custom:42; leer lassen für die "
        "Anfangsphase der Kategorie der Stelle (angegeben: {value}).",
    ),
    "connect.phase_ok": (
        "New applications land in the phase {phase}, unless a project link or the upload request names another.",
        "Neue Bewerbungen landen in der Phase {phase}, sofern keine Projekt-Verknüpfung und keine Upload-Anfrage eine andere nennt.",
    ),
    "connect.phase_unverified": (
        "New applications land in the custom phase {phase}. Personio cannot check a custom phase in advance: if the number "
        "is not one of its phases for the job's category, Personio files the candidates under 'unassigned' instead. "
        "Compare the number with {menu_phases_en}.",
        "Neue Bewerbungen landen in der eigenen Phase {phase}. Personio kann eine eigene Phase nicht vorab prüfen: Gehört die "
        "Nummer nicht zu den Phasen der Kategorie der Stelle, legt Personio die Kandidaten stattdessen unter „unassigned“ ab. "
        "Bitte die Nummer mit {menu_phases_de} abgleichen.",
    ),
    "connect.credentials_ok": (
        "Company ID and access token work.",
        "Unternehmens-ID und Zugriffs-Token funktionieren.",
    ),
    "connect.credentials_unknown": (
        "Company ID and access token could not be checked right now ({detail}); they are checked again automatically.",
        "Unternehmens-ID und Zugriffs-Token konnten gerade nicht geprüft werden ({detail}); sie werden automatisch erneut geprüft.",
    ),
    "connect.feed_ok": (
        "The jobs feed of {domain} works: {jobs} published jobs.",
        "Der Stellen-Feed von {domain} funktioniert: {jobs} veröffentlichte Stellen.",
    ),
    "connect.feed_invalid": (
        "The address {domain} answers, but not with Personio's jobs XML ({detail}). Check the domain name under Settings → Recruiting → Career page.",
        "Die Adresse {domain} antwortet, aber nicht mit Personios Stellen-XML ({detail}). Bitte den Domain-Namen unter Einstellungen → Recruiting → Karriereseite prüfen.",
    ),
    "domain.invalid": (
        "The domain {value} is not accepted: {detail}. Copy the domain name from Personio → Settings → Recruiting → Career page (e.g. acme.jobs.personio.de).",
        "Der Domain-Name {value} wird nicht akzeptiert: {detail}. Bitte den Domain-Namen aus Personio → Einstellungen → Recruiting → Karriereseite kopieren (z. B. acme.jobs.personio.de).",
    ),
    "domain.hr_app_host": (
        "{value} is the address of the Personio HR app, not of the jobs page. Use the career page's domain from Personio → Settings → Recruiting → Career page, like acme.jobs.personio.de.",
        "{value} ist die Adresse der Personio-HR-App, nicht der Karriereseite. Bitte den Domain-Namen aus Personio → Einstellungen → Recruiting → Karriereseite verwenden, z. B. acme.jobs.personio.de.",
    ),
    "domain.ip_literal": (
        "{value} is an IP address; only Personio jobs pages (NAME.jobs.personio.de or .com) are accepted.",
        "{value} ist eine IP-Adresse; erlaubt sind nur Personio-Karriereseiten (NAME.jobs.personio.de oder .com).",
    ),
    "domain.wrong_suffix": (
        "{value} is not a Personio jobs page; it must end in .jobs.personio.de or .jobs.personio.com (Personio → Settings → Recruiting → Career page).",
        "{value} ist keine Personio-Karriereseite; sie muss auf .jobs.personio.de oder .jobs.personio.com enden (Personio → Einstellungen → Recruiting → Karriereseite).",
    ),
    # The jobs feed, for the admin (besides the health texts for a feed that fails)
    "feed.ok": (
        "The jobs feed of {domain} works; every position in it is used.",
        "Der Stellen-Feed von {domain} funktioniert; alle Stellen darin werden übernommen.",
    ),
    "feed.position_skipped": (
        "The jobs feed of {domain} works, but 1 position in it was skipped (no ID, an invalid ID, no name or an ID used twice); the other jobs are up to date.",
        "Der Stellen-Feed von {domain} funktioniert, aber 1 Stelle darin wurde übersprungen (keine ID, eine ungültige ID, kein Name oder eine doppelte ID); die übrigen Stellen sind aktuell.",
    ),
    "feed.positions_skipped": (
        "The jobs feed of {domain} works, but {count} positions in it were skipped (no ID, an invalid ID, no name or an ID used twice); the other jobs are up to date.",
        "Der Stellen-Feed von {domain} funktioniert, aber {count} Stellen darin wurden übersprungen (keine ID, eine ungültige ID, kein Name oder eine doppelte ID); die übrigen Stellen sind aktuell.",
    ),
    # Connection health, for the admin
    "health.healthy": ("The connection works.", "Die Verbindung funktioniert."),
    "health.unchecked": ("The connection has not been checked yet.", "Die Verbindung wurde noch nicht geprüft."),
    "health.invalid_credentials": (
        "Personio did not accept the company ID and access token. Copy both again from {menu_api_en}.",
        "Personio hat Unternehmens-ID und Zugriffs-Token nicht akzeptiert. Bitte beide erneut aus {menu_api_de} kopieren.",
    ),
    "health.recruiting_disabled": (
        "The Personio account lacks the recruiting module or recruiting API access; the company's Personio admin has to enable it.",
        "Dem Personio-Konto fehlt das Recruiting-Modul oder der Zugriff auf die Recruiting-API; der Personio-Admin des Unternehmens muss es freischalten.",
    ),
    "health.feed_disabled": (
        "The jobs XML feed of {domain} is switched off or the domain name is wrong. Enable it in {menu_feed_en} and check the domain name under Settings → Recruiting → Career page.",
        "Der Stellen-XML-Feed von {domain} ist ausgeschaltet oder der Domain-Name ist falsch. Bitte einschalten ({menu_feed_de}) und den Domain-Namen unter Einstellungen → Recruiting → Karriereseite prüfen.",
    ),
    "health.feed_invalid": (
        "The address {domain} does not answer with Personio's jobs XML feed ({detail}). Check the domain name under Settings → Recruiting → Career page and that the feed is enabled in {menu_feed_en}.",
        "Unter {domain} antwortet nicht der Stellen-XML-Feed von Personio ({detail}). Bitte den Domain-Namen unter Einstellungen → Recruiting → Karriereseite prüfen und den Feed einschalten ({menu_feed_de}).",
    ),
    "health.feed_unreachable": (
        "The jobs feed of {domain} could not be loaded right now ({detail}); it is retried automatically.",
        "Der Stellen-Feed von {domain} konnte gerade nicht geladen werden ({detail}); es wird automatisch erneut versucht.",
    ),
    "health.rate_limited": (
        "Personio's request limit for this company is reached; work continues automatically after the lock-out.",
        "Personios Anfragegrenze für dieses Unternehmen ist erreicht; es geht nach der Sperre automatisch weiter.",
    ),
    "health.rate_limited_sustained": (
        "Personio has refused every request of this company with 'too many requests' (429) since {since}. Uploads wait and continue by itself when Personio accepts requests again. Another integration may be using up the company's API budget: ask the company's Personio admin which integrations use {menu_api_en}.",
        "Personio lehnt seit {since} jede Anfrage dieses Unternehmens mit „zu viele Anfragen“ (429) ab. Uploads warten und gehen von selbst weiter, sobald Personio wieder Anfragen annimmt. Möglicherweise verbraucht eine andere Integration das API-Kontingent des Unternehmens: bitte den Personio-Admin des Unternehmens fragen, welche Integrationen {menu_api_de} nutzen.",
    ),
    "health.channel_invalid": (
        "Personio does not know channel ID {channel_id}. Candidates are uploaded without channel attribution until an admin enters the right ID from {menu_channel_en}.",
        "Personio kennt die Channel-ID {channel_id} nicht. Kandidaten werden ohne Kanal-Zuordnung hochgeladen, bis ein Admin die richtige ID aus {menu_channel_de} einträgt.",
    ),
}

_DEFAULTS = {
    "menu_api_en": _MENU_API_EN,
    "menu_api_de": _MENU_API_DE,
    "menu_feed_en": _MENU_FEED_EN,
    "menu_feed_de": _MENU_FEED_DE,
    "menu_channel_en": _MENU_CHANNEL_EN,
    "menu_channel_de": _MENU_CHANNEL_DE,
    "menu_phases_en": _MENU_PHASES_EN,
    "menu_phases_de": _MENU_PHASES_DE,
}

# Why the domain parser (personio.domain) refused a domain, in German, by its code. A code without
# a text of its own is shown with "domain.invalid", whose {detail} is the parser's English reason
# (InvalidJobsDomain.reason) in English and this clause in German; a test checks that every code
# the parser raises has one or the other.
DOMAIN_REASONS_DE: dict[str, str] = {
    "domain.type": "er muss Text sein",
    "domain.empty": "er ist leer oder enthält keinen Host-Namen",
    "domain.too_long": "er ist länger als 253 Zeichen",
    "domain.control_char": "er enthält Steuerzeichen (Tabulator, Zeilenumbruch, NUL)",
    "domain.idn": "internationalisierte Namen (mit Nicht-ASCII-Zeichen oder Punycode xn--) werden nicht unterstützt",
    "domain.whitespace": "er enthält Leerzeichen",
    "domain.backslash": "er enthält einen Backslash",
    "domain.percent_encoding": "er enthält prozentkodierte Zeichen",
    "domain.userinfo": "er enthält ein „@“ (Benutzernamen und Passwörter sind nicht erlaubt)",
    "domain.scheme": "erlaubt sind nur der Firmenname allein oder eine Adresse, die mit https:// oder http:// beginnt",
    "domain.port": "eine Portnummer ist nicht erlaubt (bitte „:…“ entfernen)",
    "domain.invalid_char": "der Host-Name darf nur Buchstaben, Ziffern, „-“ und „.“ enthalten",
    "domain.trailing_dot": "bitte den Punkt am Ende entfernen",
    "domain.empty_label": "er enthält „..“ oder beginnt mit einem Punkt",
    "domain.multi_level": (
        "vor .jobs.personio.de oder .jobs.personio.com darf nur ein Name stehen "
        "(z. B. acme.jobs.personio.de, nicht www.acme.jobs.personio.de)"
    ),
    "domain.invalid_label": "der Firmenname muss aus 1–63 Buchstaben, Ziffern oder „-“ bestehen und darf nicht mit „-“ beginnen oder enden",
    "domain.no_company": "das ist Personios eigene Website, der Firmenname fehlt",
    "domain.not_normalised": "erwartet wird ein normalisierter Host-Name wie acme.jobs.personio.de",
}
_DOMAIN_REASON_DE_UNKNOWN = "er ist keine Adresse einer Personio-Karriereseite"

# Why a connection check could not be made (the ``{detail}`` of connect.credentials_unknown): a
# reason code is shown as it is; our own phrases have a German text here.
CHECK_REASONS_DE: dict[str, str] = {
    "rate budget busy": "das Anfragekontingent des Unternehmens ist gerade ausgeschöpft",
}


def check_reason(reason: str) -> dict[str, str]:
    """A probe's reason as a ``{detail}`` per language."""
    return {"en": reason, "de": CHECK_REASONS_DE.get(reason, reason)}

_FALLBACK = (
    "Personio refused the upload ({code}).",
    "Personio hat den Upload abgelehnt ({code}).",
)


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


# A document Personio refused without saying which one (German: after "von").
_UNNAMED_DOCUMENT = {"en": "a document", "de": "einem Dokument"}


def personio_said(detail: str | None) -> dict[str, str] | None:
    """Personio's own explanation as a sentence to append (``{said}``), per language."""
    if not detail:
        return None
    return {"en": f" Personio's explanation: “{detail}”", "de": f" Erläuterung von Personio: „{detail}“"}


# Why the attempts of an upload that was given up failed, by the last attempt's reason code: the
# recruiter is told what happened, never "could not be reached" for an answer Personio gave.
RETRY_CAUSES: dict[str, tuple[str, str]] = {
    "personio.unreachable": ("Personio could not be reached", "Personio war nicht erreichbar"),
    "personio.timeout": ("Personio did not answer in time", "Personio hat nicht rechtzeitig geantwortet"),
    "personio.server_error": (
        "Personio answered each time with a temporary error of its own",
        "Personio hat jedes Mal mit einem eigenen vorübergehenden Fehler geantwortet",
    ),
    "personio.rate_limited": ("Personio's request limit was reached each time", "Personios Anfragegrenze war jedes Mal erreicht"),
    "errors.file-validation.file-not-exists": (
        "Personio did not find the uploaded documents, even after they were uploaded again",
        "Personio hat die hochgeladenen Dokumente auch nach erneutem Hochladen nicht gefunden",
    ),
    "personio-sync.document-fetch-failed": (
        "document {document} could not be downloaded from its URL ({detail})",
        "das Dokument {document} konnte nicht von seiner URL geladen werden ({detail})",
    ),
}
_RETRY_CAUSE_UNKNOWN = (
    "each attempt failed for a passing reason ({code})",
    "jeder Versuch scheiterte aus einem vorübergehenden Grund ({code})",
)


def retry_cause(code: str, **params: Any) -> dict[str, str]:
    """The ``{cause}`` of ``personio-sync.retries-exhausted``, per language, for the last reason code."""
    english, german = RETRY_CAUSES.get(code, _RETRY_CAUSE_UNKNOWN)
    if "filename" in params and "document" not in params:
        params["document"] = f"'{params['filename']}'" if params["filename"] else _UNNAMED_DOCUMENT
    values = {k: v for k, v in {"code": code, **params}.items() if v is not None}
    return {
        "en": string.Formatter().vformat(english, (), _Lenient({k: v.get("en", "?") if isinstance(v, dict) else v for k, v in values.items()})),
        "de": string.Formatter().vformat(german, (), _Lenient({k: v.get("de", "?") if isinstance(v, dict) else v for k, v in values.items()})),
    }


def moment(at: datetime) -> str:
    """A point in time as recruiters read it in either language: 2026-11-29 17:02 UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(code: str, language: str, **params: Any) -> str:
    """The message for ``code`` in ``language`` ("en" or "de").

    A parameter may be a dict keyed by language, for values that differ per language.
    ``{document}`` is the quoted ``filename`` when known, else "a document".
    """
    if code not in MESSAGES and code.startswith("domain."):
        # The parser's reason is English; German shows the same reason from DOMAIN_REASONS_DE.
        detail = params.get("detail")
        if not isinstance(detail, dict):
            reason = {"de": DOMAIN_REASONS_DE.get(code, _DOMAIN_REASON_DE_UNKNOWN)}
            params = {**params, "detail": reason if detail is None else {"en": detail, **reason}}
        code = "domain.invalid"
    english, german = MESSAGES.get(code, _FALLBACK)
    template = german if language == "de" else english
    given = {k: v for k, v in params.items() if v is not None}
    if "document" not in given:
        given["document"] = f"'{given['filename']}'" if given.get("filename") else _UNNAMED_DOCUMENT
    merged = {"said": "", **_DEFAULTS, "code": code, **given}
    values = _Lenient({k: v.get(language, "?") if isinstance(v, dict) else v for k, v in merged.items()})
    return string.Formatter().vformat(template, (), values)


def render_both(code: str, **params: Any) -> dict[str, str]:
    """The message in every language, as stored on an upload and published in events."""
    return {language: render(code, language, **params) for language in LANGUAGES}
