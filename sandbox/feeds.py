"""Rendering of Personio's career-site jobs feed and its failure variants.

The XML mirrors Personio's real feed: root ``workzag-jobs``, one
``position`` per *published* job, descriptions as HTML inside CDATA. The
non-XML pages imitate what clients observe when the feed is disabled or the
subdomain is wrong, so the worker's feed detection can be exercised.
"""

from __future__ import annotations

import hashlib
from xml.sax.saxutils import escape

from sandbox.config import CompanyConfig, JobConfig

DEFAULT_LANGUAGE = "de"
XML_CONTENT_TYPE = "text/xml; charset=UTF-8"
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
MARKETING_URL = "https://www.personio.de/"

_SALARY_KEYS = ("min", "max", "currencySymbol", "currencyCode", "type")


def render_feed(company: CompanyConfig, language: str = DEFAULT_LANGUAGE) -> bytes:
    """Render the XML feed of a company's published jobs.

    The content does not vary with ``language``; Personio would translate the
    texts, but clients only need the parameter to be accepted.
    """
    del language  # accepted for parity with Personio, content is language-neutral
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    published = [job for job in company.jobs if job.published]
    if not published:
        # An account without open jobs answers 200 with an empty root, as Personio does.
        lines.append("<workzag-jobs></workzag-jobs>")
    else:
        lines.append("<workzag-jobs>")
        for job in published:
            lines.extend(_render_position(job))
        lines.append("</workzag-jobs>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def truncate_feed(body: bytes) -> bytes:
    """Cut a feed mid-document so that it no longer parses as XML."""
    return body[: max(len(body) // 2, 40)]


def etag_for(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def marketing_page() -> bytes:
    """The HTML a disabled feed reportedly serves instead of XML."""
    return _html_page(
        "Personio | HR-Software für kleine und mittelständische Unternehmen",
        "<h1>Die HR-Software für Ihr Unternehmen</h1><p>Jetzt kostenlos testen.</p>",
    )


def not_found_page(host: str) -> bytes:
    return _html_page(
        "Seite nicht gefunden | Personio",
        f"<h1>404</h1><p>Die Seite {escape(host)} konnte nicht gefunden werden.</p>",
    )


def redirect_page(location: str) -> bytes:
    return _html_page("301 Moved Permanently", f'<a href="{escape(location)}">Moved</a>')


def server_error_page() -> bytes:
    return _html_page(
        "503 Service Unavailable",
        "<h1>503</h1><p>Wir sind gleich wieder für Sie da.</p>",
    )


def _render_position(job: JobConfig) -> list[str]:
    out = ["  <position>", _element("id", str(job.id), 4)]
    if job.subcompany is not None:
        out.append(_element("subcompany", job.subcompany, 4))
    out.append(_element("office", job.office, 4))
    if job.additional_offices:
        out.append("    <additionalOffices>")
        out.extend(_element("office", office, 6) for office in job.additional_offices)
        out.append("    </additionalOffices>")
    out.append(_element("department", job.department, 4))
    if job.recruiting_category is not None:
        out.append(_element("recruitingCategory", job.recruiting_category, 4))
    out.append(_element("name", job.name, 4))
    out.extend(_render_descriptions(job))
    optional = (
        ("employmentType", job.employment_type),
        ("seniority", job.seniority),
        ("schedule", job.schedule),
        ("yearsOfExperience", job.years_of_experience),
        ("keywords", job.keywords),
        ("occupation", job.occupation),
        ("occupationCategory", job.occupation_category),
        ("createdAt", job.created_at),
    )
    out.extend(_element(tag, value, 4) for tag, value in optional if value is not None)
    if job.salary is not None:
        out.append("    <salaryInformation>")
        for key in _SALARY_KEYS:
            value = job.salary.get(key)
            out.append(_element(key, "" if value is None else str(value), 6))
        out.append("    </salaryInformation>")
    out.append("  </position>")
    return out


def _render_descriptions(job: JobConfig) -> list[str]:
    out = ["    <jobDescriptions>"]
    for name, html in job.descriptions:
        out.append("      <jobDescription>")
        out.append(_element("name", name, 8))
        out.append(f"        <value>{_cdata(html)}</value>")
        out.append("      </jobDescription>")
    out.append("    </jobDescriptions>")
    return out


def _element(tag: str, text: str, indent: int) -> str:
    return f"{' ' * indent}<{tag}>{escape(text)}</{tag}>"


def _cdata(text: str) -> str:
    # "]]>" would end the CDATA section early; split it across two sections.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _html_page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=\"de\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title></head><body>{body}</body></html>\n"
    ).encode()
