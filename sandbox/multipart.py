"""Multipart/form-data parsing for the document upload endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value


class MultipartError(ValueError):
    """The multipart body cannot be parsed."""


@dataclass
class FormPart:
    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes


def parse_multipart(body: bytes, boundary: str) -> list[FormPart]:
    """Split a multipart/form-data body into its parts.

    The stdlib ``cgi`` module is deprecated, and uploads are buffered anyway,
    so a small splitter over the whole body is all that is needed.
    """
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 3:
        raise MultipartError("no multipart parts found")
    parts: list[FormPart] = []
    for section in sections[1:]:
        if section.startswith(b"--"):
            return parts
        head, separator, data = section.partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("part without header terminator")
        headers = HeaderParser().parsestr(head.lstrip(b"\r\n").decode("utf-8", "replace"))
        parts.append(
            FormPart(
                name=_disposition_param(headers, "name"),
                filename=headers.get_filename(),
                content_type=headers.get_content_type() if "content-type" in headers else None,
                data=data,
            )
        )
    raise MultipartError("missing closing boundary")


def _disposition_param(headers: Message, name: str) -> str | None:
    value = headers.get_param(name, header="content-disposition")
    if value is None:
        return None
    return collapse_rfc2231_value(value)


def form_boundary(content_type: str) -> str | None:
    """The boundary of a multipart/form-data ``Content-Type``; None for any other type."""
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        return None
    boundary = message.get_param("boundary")
    return collapse_rfc2231_value(boundary) if boundary else None
