"""Turn whatever an admin pastes as "Personio domain" into a safe jobs-page host.

The host we return is later placed into the feed URL template and fetched by
the worker, so this module is the SSRF gate (docs/personio.md, "The feed as untrusted
input"). It never
resolves DNS and never makes a request: it only accepts inputs whose host is
exactly ``<slug>.jobs.personio.de`` or ``<slug>.jobs.personio.com`` (or a bare
slug), and it rebuilds the host from the validated slug rather than passing
any part of the input through.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlencode

__all__ = [
    "FEED_LANGUAGES",
    "PERSONIO_JOBS_SUFFIXES",
    "InvalidJobsDomain",
    "feed_url",
    "job_url",
    "normalise_jobs_domain",
]

PERSONIO_JOBS_SUFFIXES: tuple[str, ...] = (".jobs.personio.de", ".jobs.personio.com")
DEFAULT_JOBS_SUFFIX = PERSONIO_JOBS_SUFFIXES[0]

# The languages the XML feed understands (docs/personio.md, "Jobs XML feed"); the one list,
# also used by connect's input checks and the stand-in's feed.
FEED_LANGUAGES: frozenset[str] = frozenset({"de", "en", "fr", "es", "nl", "it", "pt"})

# A DNS label as Personio uses it for company slugs; deliberately ASCII only.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CANONICAL = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.jobs\.personio\.(?:de|com)"
)
# "name:" is a URL scheme (https://, javascript:, file:) unless it reads as
# "host:port", i.e. only digits follow up to the end of the authority;
# "http:" and "https:" are always schemes, however mangled what follows.
_SCHEME = re.compile(
    r"(?:([Hh][Tt][Tt][Pp][Ss]?)|([A-Za-z][A-Za-z0-9+.-]*)):(?=//|(?(1)|(?!\d*(?:[/?#]|$))))"
)
_HOST_CHARS = re.compile(r"[a-z0-9.-]+")
# WHATWG URL parsing treats a host whose last label is a number (decimal,
# octal with a leading 0, or 0x-hex) as an IPv4 address, so "2130706433",
# "0x7f.1" and "0177.0.0.1" all mean 127.0.0.1 to a browser or proxy.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")

_MAX_INPUT_LENGTH = 253
# Only the characters a copy-paste typically adds around a value; anything
# else (NUL, embedded CR/LF, tabs inside) is refused rather than cleaned.
_TRIM = " \t\r\n\f\v"

_PERSONIO_BASE_HOSTS = frozenset(
    {
        "personio.de",
        "personio.com",
        "www.personio.de",
        "www.personio.com",
        "jobs.personio.de",
        "jobs.personio.com",
        "api.personio.de",
        "api.personio.com",
        "app.personio.de",
        "app.personio.com",
    }
)
_FIX = (
    "enter the company name (e.g. acme) or the jobs page address "
    "like https://acme.jobs.personio.de"
)


class InvalidJobsDomain(ValueError):
    """The configured Personio domain cannot be used.

    ``code`` is a stable machine-readable reason (``domain.*``), ``raw`` the
    rejected input, and ``str(error)`` a one-line English explanation for the
    admin that names the ``domain`` field and says how to fix it.
    """

    def __init__(self, code: str, raw: object, reason: str) -> None:
        self.code = code
        self.raw = raw
        self.reason = reason
        super().__init__(f"domain {_show(raw)} is not accepted: {reason}")

    def __reduce__(self) -> tuple[type[InvalidJobsDomain], tuple[str, object, str]]:
        # Celery pickles exceptions; the default would call cls(message).
        return (self.__class__, (self.code, self.raw, self.reason))


def _show(raw: object) -> str:
    # repr() escapes CR/LF/NUL so the message always stays on one line, and
    # the cut keeps hostile megabyte inputs out of logs.
    text = raw if isinstance(raw, str) else repr(raw)
    shown = repr(text[:80])
    return shown if len(text) <= 80 else shown + "…"


def normalise_jobs_domain(raw: str) -> str:
    """Return the canonical jobs-page host, e.g. ``acme.jobs.personio.de``.

    Accepts a bare company slug (which maps to ``.jobs.personio.de``), a jobs
    host, or an http(s) URL of the jobs page with any path, query or fragment,
    in any case and with surrounding whitespace.

    Raises:
        InvalidJobsDomain: for anything else; see ``InvalidJobsDomain.code``.
    """
    if not isinstance(raw, str):
        raise InvalidJobsDomain("domain.type", raw, f"it must be text; {_FIX}")
    text = raw.strip(_TRIM)
    if not text:
        raise InvalidJobsDomain("domain.empty", raw, f"it is empty; {_FIX}")
    if len(text) > _MAX_INPUT_LENGTH:
        raise InvalidJobsDomain(
            "domain.too_long",
            raw,
            f"it is longer than {_MAX_INPUT_LENGTH} characters; {_FIX}",
        )
    # Character-level checks come first and apply to the whole input, path
    # included: these are the characters different URL parsers disagree on.
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidJobsDomain(
            "domain.control_char", raw, f"it contains control characters (tab, CR, LF, NUL); {_FIX}"
        )
    if not text.isascii():
        # Rejected before lower-casing: "K" (Kelvin sign) lower-cases to "k".
        raise InvalidJobsDomain(
            "domain.idn",
            raw,
            f"internationalised (non-ASCII) names are not supported; {_FIX}",
        )
    if " " in text:
        raise InvalidJobsDomain("domain.whitespace", raw, f"it contains spaces; {_FIX}")
    if "\\" in text:
        raise InvalidJobsDomain("domain.backslash", raw, f"it contains a backslash; {_FIX}")
    if "%" in text:
        raise InvalidJobsDomain(
            "domain.percent_encoding", raw, f"it contains percent-encoded characters; {_FIX}"
        )
    if "@" in text:
        raise InvalidJobsDomain(
            "domain.userinfo",
            raw,
            f"it contains '@' (user names or passwords are not allowed); {_FIX}",
        )

    rest = text
    if rest.startswith("/"):
        raise InvalidJobsDomain(
            "domain.scheme", raw, f"it starts with '/' instead of https:// or a name; {_FIX}"
        )
    scheme_match = _SCHEME.match(rest)
    if scheme_match:
        scheme = (scheme_match.group(1) or scheme_match.group(2)).lower()
        if scheme not in ("http", "https"):
            raise InvalidJobsDomain(
                "domain.scheme", raw, f"only http:// and https:// addresses are accepted; {_FIX}"
            )
        rest = rest[scheme_match.end():]
        if not rest.startswith("//"):
            raise InvalidJobsDomain(
                "domain.scheme", raw, f"the address must start with {scheme}://; {_FIX}"
            )
        rest = rest[2:]

    # The authority ends at the first "/", "?" or "#", as in WHATWG URL
    # parsing; backslash (which browsers also treat as "/") is refused above.
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not authority:
        raise InvalidJobsDomain("domain.empty", raw, f"it has no host name; {_FIX}")
    if authority.startswith("[") or authority.count(":") >= 2:
        raise InvalidJobsDomain(
            "domain.ip_literal", raw, f"IP addresses are not accepted; {_FIX}"
        )
    host, has_port, _port = authority.partition(":")
    host = host.lower()
    if _looks_like_ip(host):
        raise InvalidJobsDomain(
            "domain.ip_literal", raw, f"IP addresses are not accepted; {_FIX}"
        )
    if has_port:
        raise InvalidJobsDomain(
            "domain.port", raw, f"a port number is not allowed (remove ':…'); {_FIX}"
        )
    if not _HOST_CHARS.fullmatch(host):
        raise InvalidJobsDomain(
            "domain.invalid_char",
            raw,
            f"the host name may only contain letters, digits, '-' and '.'; {_FIX}",
        )
    if host.endswith("."):
        raise InvalidJobsDomain(
            "domain.trailing_dot", raw, f"remove the trailing '.'; {_FIX}"
        )
    labels = host.split(".")
    if "" in labels:
        raise InvalidJobsDomain(
            "domain.empty_label", raw, f"it contains '..' or a leading '.'; {_FIX}"
        )
    if any(label.startswith("xn--") for label in labels):
        raise InvalidJobsDomain(
            "domain.idn", raw, f"internationalised (punycode xn--) names are not supported; {_FIX}"
        )

    if len(labels) == 1:
        return _canonical(labels[0], DEFAULT_JOBS_SUFFIX, raw)
    for suffix in PERSONIO_JOBS_SUFFIXES:
        if host.endswith(suffix):
            slug = host[: -len(suffix)]
            if "." in slug:
                raise InvalidJobsDomain(
                    "domain.multi_level",
                    raw,
                    "only one name may come before "
                    f"{suffix[1:]} (e.g. acme{suffix}, not www.acme{suffix}); {_FIX}",
                )
            return _canonical(slug, suffix, raw)
    raise _foreign_host(host, labels, raw)


def _looks_like_ip(host: str) -> bool:
    candidate = host[:-1] if host.endswith(".") else host
    if not candidate:
        return False
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        pass
    else:
        return True
    return _NUMERIC_LABEL.fullmatch(candidate.rsplit(".", 1)[-1]) is not None


def _canonical(slug: str, suffix: str, raw: object) -> str:
    if not _SLUG.fullmatch(slug):
        raise InvalidJobsDomain(
            "domain.invalid_label",
            raw,
            "the company name must be 1-63 letters, digits or '-', "
            f"not starting or ending with '-'; {_FIX}",
        )
    return slug + suffix


def _foreign_host(host: str, labels: list[str], raw: object) -> InvalidJobsDomain:
    if host in _PERSONIO_BASE_HOSTS:
        return InvalidJobsDomain(
            "domain.no_company",
            raw,
            f"{host} is Personio's own site, the company name is missing; {_FIX}",
        )
    parent = ".".join(labels[1:])
    if len(labels) == 3 and parent in ("personio.de", "personio.com"):
        company = labels[0]
        if company.endswith("jobs") and len(company) > len("jobs"):
            # "acmejobs.personio.de": the dot before "jobs" went missing.
            guess = company[: -len("jobs")].rstrip("-")
            return InvalidJobsDomain(
                "domain.wrong_suffix",
                raw,
                f"did you mean {guess}.jobs.{parent}? The jobs page ends in .jobs.{parent}; {_FIX}",
            )
        return InvalidJobsDomain(
            "domain.hr_app_host",
            raw,
            f"{host} is the Personio HR app, not the public jobs page; "
            f"use {company}.jobs.{parent} (Settings → Recruiting → Career page)",
        )
    return InvalidJobsDomain(
        "domain.wrong_suffix",
        raw,
        "the host must end in .jobs.personio.de or .jobs.personio.com; " + _FIX,
    )


def _require_canonical(domain: str) -> None:
    # Defence in depth: the stored domain should already be normalised, but
    # the fetch target must never be built from anything else.
    try:
        canonical = (
            isinstance(domain, str)
            and _CANONICAL.fullmatch(domain) is not None
            and normalise_jobs_domain(domain) == domain
        )
    except InvalidJobsDomain:
        canonical = False
    if not canonical:
        raise InvalidJobsDomain(
            "domain.not_normalised",
            domain,
            "expected a normalised host like acme.jobs.personio.de; "
            "pass the value through normalise_jobs_domain() first",
        )


def feed_url(template: str, domain: str, language: str | None) -> str:
    """Build the XML feed URL from a configured template.

    ``template`` contains ``{domain}`` exactly once, e.g. ``https://{domain}/xml``
    (or a local stand-in such as ``http://127.0.0.1:8765/feeds/{domain}/xml``).

    Raises:
        InvalidJobsDomain: ``domain`` is not a normalised jobs host.
        ValueError: the template is unusable or the language unsupported.
    """
    _require_canonical(domain)
    if template.count("{domain}") != 1:
        raise ValueError("feed URL template must contain '{domain}' exactly once")
    # str.replace instead of str.format: other braces in the template stay literal.
    url = template.replace("{domain}", domain)
    if language is None:
        return url
    if language not in FEED_LANGUAGES:
        raise ValueError(
            f"feed language {language!r} is not supported; use one of "
            + ", ".join(sorted(FEED_LANGUAGES))
        )
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode({"language": language})


def job_url(domain: str, job_id: int) -> str:
    """Public job page, ``https://{domain}/job/{id}`` (the feed has no URL element)."""
    _require_canonical(domain)
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
        raise ValueError(f"job id must be a positive integer, got {job_id!r}")
    return f"https://{domain}/job/{job_id}"
