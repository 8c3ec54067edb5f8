"""Personio's answers as tests need them: one table, shared by the client and the upload tests."""

from __future__ import annotations

FILE_NOT_EXISTS = "errors.file-validation.file-not-exists"
JOB_NOT_PUBLISHED = "errors.job-position.not-published"

# Every reason code of a plain 400 from POST /v1/recruiting/applications (docs/personio.md,
# "Error bodies and reason codes"), with the field Personio reports it on.
FIELD_REASONS_400: list[tuple[str, str]] = [
    ("errors.attribute-validation.unknown", "custom_attribute_9"),
    ("errors.attribute-validation.required-attribute", "first_name"),
    ("errors.attribute-validation.invalid-date-format", "birthday"),
    ("errors.attribute-validation.invalid-email-format", "email"),
    ("errors.attribute-validation.invalid-type", "tags"),
    ("errors.attribute-validation.unknown-attribute-option", "gender"),
    ("errors.date-validation.date-in-the-future", "application_date"),
    ("errors.phase-validation.invalid-system-phase", "phase"),
    (FILE_NOT_EXISTS, "files"),
    ("errors.file-validation.unknown-file-category", "files"),
    ("errors.invalid-file-type", "files"),
    ("errors.file-too-big", "files"),
    ("errors.posting-validation.posting-not-found", "external_posting_id"),
    (JOB_NOT_PUBLISHED, "job_position_id"),
]
