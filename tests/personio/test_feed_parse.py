"""parse_feed against a corpus of real-shaped, broken and hostile feeds."""

from __future__ import annotations

import pickle
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from personio.errors import PersonioError
from personio.feed import (
    MAX_FEED_BYTES,
    FeedError,
    FeedInvalid,
    FeedJob,
    FeedSalary,
    parse_feed,
)

FEEDS = Path(__file__).parent / "feeds"

# Every file in feeds/ with its expected outcome: a job count when it parses,
# otherwise the FeedInvalid code.
CORPUS: dict[str, int | str] = {
    "normal.xml": 2,
    "empty.xml": 0,
    "missing_optional.xml": 1,
    "created_at_styles.xml": 7,
    "salary_edge_cases.xml": 3,
    "cdata_html.xml": 1,
    "latin1.xml": 1,
    "utf8_bom.xml": 1,
    "html_page.html": "feed.dtd_forbidden",
    "truncated.xml": "feed.truncated",
    "wrong_root.xml": "feed.wrong_root",
    "namespaced_root.xml": "feed.wrong_root",
    "billion_laughs.xml": "feed.dtd_forbidden",
    "xxe_file.xml": "feed.dtd_forbidden",
    "xxe_metadata.xml": "feed.dtd_forbidden",
    "dtd_internal.xml": "feed.dtd_forbidden",
    "dtd_external.xml": "feed.dtd_forbidden",
    "parameter_entity.xml": "feed.dtd_forbidden",
    "undefined_entity.xml": "feed.malformed",
    "junk_after_root.xml": "feed.malformed",
    "invalid_utf8.xml": "feed.malformed",
    "unknown_encoding.xml": "feed.bad_encoding",
    "declared_utf16_but_utf8.xml": "feed.bad_encoding",
    # One bad position costs that position; a feed of nothing but bad ones is refused.
    "position_without_id.xml": 1,
    "position_without_name.xml": "feed.no_valid_position",
    "non_integer_id.xml": "feed.no_valid_position",
    "duplicate_ids.xml": 1,
    # Shaped like real Personio feeds (see REAL_SHAPED below).
    "real_de_mixed.xml": 3,
    "real_en_mixed.xml": 3,
    "real_fr_unknown_elements.xml": 3,
}

# Real-shaped feeds: the ids kept, and each skipped position as (index, id, reason).
REAL_SHAPED: dict[str, tuple[list[int], list[tuple[int, int | None, str]]]] = {
    "real_de_mixed.xml": (
        [2101001, 2101002, 2101003],
        [
            (2, None, "feed.position_without_id"),
            (4, 2101001, "feed.duplicate_id"),
            (5, None, "feed.position_without_id"),  # <id>   </id>
        ],
    ),
    "real_en_mixed.xml": (
        [3300017, 3300018, 3300020],
        [
            (3, 3300017, "feed.duplicate_id"),
            (4, 3300017, "feed.duplicate_id"),
            (5, 3300019, "feed.position_without_name"),
        ],
    ),
    "real_fr_unknown_elements.xml": (
        [4400001, 4400002, 4400003],
        [(2, None, "feed.position_without_id")],
    ),
}


def load(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def parse_one(data: bytes) -> FeedJob:
    jobs = parse_feed(data)
    assert len(jobs) == 1
    return jobs[0]


def invalid_code(data: bytes, **kwargs: int) -> str:
    with pytest.raises(FeedInvalid) as caught:
        parse_feed(data, **kwargs)
    return caught.value.code


def test_corpus_table_covers_every_fixture_file() -> None:
    assert sorted(path.name for path in FEEDS.iterdir()) == sorted(CORPUS)


@pytest.mark.parametrize(("name", "expected"), sorted(CORPUS.items()))
def test_corpus_outcome(name: str, expected: int | str) -> None:
    data = load(name)
    if isinstance(expected, int):
        assert len(parse_feed(data)) == expected
    else:
        assert invalid_code(data) == expected


# --- valid feeds ----------------------------------------------------------


def test_normal_feed_all_fields() -> None:
    first, second = parse_feed(load("normal.xml"))
    assert first == FeedJob(
        id=1000001,
        name="Backend Engineer (m/f/d)",
        office="Berlin",
        additional_offices=("Remote", "Hamburg"),
        department="Engineering",
        recruiting_category="Tech",
        employment_type="permanent",
        seniority="experienced",
        schedule="full-time",
        years_of_experience="2-5",
        keywords="python,backend",
        occupation="software_and_web_development",
        occupation_category="it_software",
        subcompany="Example GmbH",
        created_at=datetime(2024, 1, 15, 9, 30, tzinfo=UTC),
        salary=FeedSalary(
            min=Decimal("60000.00"),
            max=None,
            currency_code="EUR",
            currency_symbol="€",
            type="yearly",
        ),
        description_sections=("Your tasks", "Your profile"),
    )
    assert second.id == 1000002
    assert second.office == "München"
    assert second.additional_offices == ()
    assert second.department == "Sales & Marketing"
    assert second.subcompany is None  # present but empty
    assert second.recruiting_category is None  # absent
    assert second.schedule == "full-or-part-time"
    assert second.created_at == datetime(2023, 11, 2, 13, 5, 9, tzinfo=UTC)
    assert second.salary == FeedSalary(
        min=Decimal("3500"),
        max=Decimal("4200.50"),
        currency_code="EUR",
        currency_symbol="€",
        type="monthly",
    )


def test_jobs_are_immutable() -> None:
    job = parse_one(load("missing_optional.xml"))
    with pytest.raises(AttributeError):
        job.name = "changed"  # type: ignore[misc]


def test_empty_account_is_72_bytes_and_zero_jobs() -> None:
    data = load("empty.xml")
    assert len(data) == 72
    assert parse_feed(data) == []


@pytest.mark.parametrize(
    "data",
    [
        b"<workzag-jobs/>",
        b'<?xml version="1.0" encoding="UTF-8"?><workzag-jobs></workzag-jobs>',
        b"<workzag-jobs><!-- nothing open --><?pi ignored?></workzag-jobs>",
    ],
)
def test_empty_root_variants_are_zero_jobs(data: bytes) -> None:
    assert parse_feed(data) == []


def test_missing_optional_elements_are_none_and_whitespace_is_trimmed() -> None:
    job = parse_one(load("missing_optional.xml"))
    assert job.id == 42
    assert job.name == "Working Student Marketing"
    for attribute in (
        "office", "department", "recruiting_category", "employment_type", "seniority",
        "schedule", "years_of_experience", "keywords", "occupation", "occupation_category",
        "subcompany", "created_at", "salary",
    ):
        assert getattr(job, attribute) is None, attribute
    assert job.additional_offices == ()
    assert job.description_sections == ()


def test_created_at_styles() -> None:
    jobs = {job.id: job.created_at for job in parse_feed(load("created_at_styles.xml"))}
    instant = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)
    assert jobs[1] == instant
    assert jobs[2] == instant
    assert jobs[2] is not None and jobs[2].utcoffset() == timedelta(hours=2)
    assert jobs[3] == instant
    assert jobs[4] == instant + timedelta(milliseconds=250)
    for job_id in (1, 2, 3, 4):
        stamp = jobs[job_id]
        assert stamp is not None and stamp.tzinfo is not None
    # Naive, garbage and impossible timestamps degrade to "unknown" instead of failing the feed.
    assert jobs[5] is None
    assert jobs[6] is None
    assert jobs[7] is None


def test_salary_edge_cases() -> None:
    jobs = {job.id: job.salary for job in parse_feed(load("salary_edge_cases.xml"))}
    assert jobs[10] == FeedSalary(
        min=None, max=None, currency_code="USD", currency_symbol="$", type="yearly"
    )
    assert jobs[11] is None  # every child empty: no salary information at all
    assert jobs[12] == FeedSalary(
        min=None, max=None, currency_code="EUR", currency_symbol=None, type=None
    )


def test_cdata_html_descriptions_are_not_parsed_as_markup() -> None:
    job = parse_one(load("cdata_html.xml"))
    assert job.id == 77
    assert job.name == "Engineer <Platform> & Ops"
    assert job.description_sections == ("About us", "Benefits & perks")


def test_latin1_declared_encoding() -> None:
    job = parse_one(load("latin1.xml"))
    assert (job.name, job.office) == ("Köchin", "München")


def test_utf8_bom() -> None:
    assert parse_one(load("utf8_bom.xml")).name == "Köchin"


def test_utf16_with_bom() -> None:
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        "<workzag-jobs><position><id>8</id><name>Köchin</name></position></workzag-jobs>"
    )
    assert parse_one(text.encode("utf-16")).name == "Köchin"


def test_utf32_is_refused() -> None:
    text = '<?xml version="1.0" encoding="UTF-32"?><workzag-jobs/>'
    # Declared but not supported by expat: an encoding problem.
    assert invalid_code(text.encode("ascii")) == "feed.bad_encoding"
    # Actually UTF-32 encoded: expat reads the BOM as UTF-16 and hits NULs.
    assert invalid_code(text.encode("utf-32")) == "feed.malformed"


def test_unknown_elements_and_attributes_are_ignored() -> None:
    data = (
        b'<workzag-jobs version="2" generated="now">'
        b"<meta><id>999</id></meta>"
        b'<position kind="x"><id type="int">3</id><name lang="en">Dev</name>'
        b"<futureField><nested>1</nested></futureField></position>"
        b"</workzag-jobs>"
    )
    jobs = parse_feed(data)
    assert [(job.id, job.name) for job in jobs] == [(3, "Dev")]


def test_nested_office_elements_are_not_confused_with_the_primary_office() -> None:
    data = (
        b"<workzag-jobs><position><id>3</id><name>Dev</name>"
        b"<additionalOffices><office>Remote</office><office> </office></additionalOffices>"
        b"</position></workzag-jobs>"
    )
    job = parse_one(data)
    assert job.office is None
    assert job.additional_offices == ("Remote",)


def test_five_thousand_positions() -> None:
    position = (
        "<position><id>{id}</id><office>Berlin</office><department>Engineering</department>"
        "<name>Engineer {id}</name><jobDescriptions><jobDescription><name>Tasks</name>"
        "<value><![CDATA[<p>" + "Build things. " * 40 + "</p>]]></value></jobDescription>"
        "</jobDescriptions><createdAt>2024-01-15T09:30:00+0200</createdAt></position>"
    )
    data = (
        '<?xml version="1.0" encoding="UTF-8"?><workzag-jobs>'
        + "".join(position.format(id=1000 + i) for i in range(5000))
        + "</workzag-jobs>"
    ).encode()
    jobs = parse_feed(data)
    assert len(jobs) == 5000
    assert [job.id for job in jobs] == list(range(1000, 6000))
    assert jobs[-1].name == "Engineer 5999"


def test_memory_stays_flat_because_positions_are_not_kept() -> None:
    # 1 000 positions x 20 kB of description = 20 MB of text. A parser that
    # kept the tree would hold all of it; ours holds one position at a time.
    description = "x" * 20_000
    position = (
        "<position><id>{id}</id><name>Job</name><jobDescriptions><jobDescription>"
        f"<name>Tasks</name><value><![CDATA[{description}]]></value>"
        "</jobDescription></jobDescriptions></position>"
    )
    data = (
        "<workzag-jobs>"
        + "".join(position.format(id=i) for i in range(1, 1001))
        + "</workzag-jobs>"
    ).encode()
    tracemalloc.start()
    try:
        jobs = parse_feed(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(jobs) == 1000
    # Measured ~3 MB (mostly the 1 000 FeedJobs); a kept tree measures ~23 MB.
    assert peak < 8_000_000, f"peak {peak} bytes while parsing {len(data)} bytes"


# --- hostile and broken ---------------------------------------------------


def test_quadratic_blowup_is_refused() -> None:
    entity = "A" * 50_000
    data = (
        '<?xml version="1.0"?><!DOCTYPE workzag-jobs [<!ENTITY a "' + entity + '">]>'
        "<workzag-jobs><position><id>1</id><name>" + "&a;" * 20_000 + "</name></position>"
        "</workzag-jobs>"
    ).encode()
    assert invalid_code(data) == "feed.dtd_forbidden"


def test_hundred_thousand_deep_nesting_is_refused() -> None:
    depth = 100_000
    data = b"<workzag-jobs>" + b"<a>" * depth + b"</a>" * depth + b"</workzag-jobs>"
    assert invalid_code(data) == "feed.too_deep"


def test_deep_nesting_inside_a_position_is_refused() -> None:
    depth = 1_000
    data = (
        b"<workzag-jobs><position><id>1</id><name>x</name>"
        + b"<x>" * depth + b"</x>" * depth
        + b"</position></workzag-jobs>"
    )
    assert invalid_code(data) == "feed.too_deep"


def test_depth_limit_boundary() -> None:
    def nested(levels: int) -> bytes:
        # The root is level 1, so ``levels - 1`` elements go inside it.
        inner = levels - 1
        return b"<workzag-jobs>" + b"<a>" * inner + b"</a>" * inner + b"</workzag-jobs>"

    assert parse_feed(nested(32)) == []
    assert invalid_code(nested(33)) == "feed.too_deep"
    assert parse_feed(nested(5), max_depth=5) == []
    assert invalid_code(nested(6), max_depth=5) == "feed.too_deep"


def test_oversized_body_is_refused_before_parsing() -> None:
    data = load("normal.xml")
    assert invalid_code(data, max_bytes=len(data) - 1) == "feed.too_large"
    assert len(parse_feed(data, max_bytes=len(data))) == 2


def test_default_cap_is_20_mib() -> None:
    assert MAX_FEED_BYTES == 20 * 1024 * 1024
    filler = MAX_FEED_BYTES - len(b"<workzag-jobs></workzag-jobs>")
    at_cap = b"<workzag-jobs>" + b" " * filler + b"</workzag-jobs>"
    assert len(at_cap) == MAX_FEED_BYTES
    assert parse_feed(at_cap) == []
    assert invalid_code(at_cap + b" ") == "feed.too_large"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "feed.empty_body"),
        (b"   \r\n\t ", "feed.empty_body"),
        (b'<?xml version="1.0" encoding="UTF-8"?>', "feed.truncated"),
        (b"<workzag-jobs><position><id>1</id>", "feed.truncated"),
        (b"<workzag-jobs><position><id>1</id><name>Cut off</na", "feed.truncated"),
        (b"<workzag-jobs", "feed.truncated"),
        (b"<workzag-jobs><position></workzag-jobs>", "feed.malformed"),
        (b"<workzag-jobs>&#0;</workzag-jobs>", "feed.malformed"),
        (b"not xml at all", "feed.malformed"),
        (b'{"jobs": []}', "feed.malformed"),
        (b"<html><body>Personio</body></html>", "feed.wrong_root"),  # HTML without a doctype
    ],
)
def test_a_body_that_is_no_feed_is_invalid_with_its_reason(data: bytes, code: str) -> None:
    assert invalid_code(data) == code


@pytest.mark.parametrize(
    "raw_id",
    ["-1", "0", "+5", "1_000", "1.0", "1e3", "0x10", "\u0661\u0662", "12 34",
     "99999999999999999999", "9223372036854775808"],
)
def test_non_integer_or_out_of_range_ids(raw_id: str) -> None:
    data = (
        f"<workzag-jobs><position><id>{raw_id}</id><name>x</name></position>"
        "<position><id>2</id><name>y</name></position></workzag-jobs>"
    )
    jobs = parse_feed(data.encode())
    assert [job.id for job in jobs] == [2]
    assert [(s.index, s.id, s.reason) for s in jobs.skipped] == [(1, None, "feed.bad_id")]
    assert invalid_code(data.split("<position><id>2")[0].encode() + b"</workzag-jobs>") == (
        "feed.no_valid_position"
    )


def test_largest_id_that_fits_a_bigint() -> None:
    data = (
        b"<workzag-jobs><position><id> 9223372036854775807 </id>"
        b"<name>x</name></position></workzag-jobs>"
    )
    assert parse_one(data).id == 2**63 - 1


def test_skipped_positions_say_which_position_and_why() -> None:
    without_id = parse_feed(load("position_without_id.xml"))
    assert [job.id for job in without_id] == [1]
    [skipped] = without_id.skipped
    assert (skipped.index, skipped.id, skipped.reason) == (2, None, "feed.position_without_id")
    assert "#2" in skipped.detail

    duplicates = parse_feed(load("duplicate_ids.xml"))
    assert [(job.id, job.name) for job in duplicates] == [(5, "First")]  # the first one is kept
    assert [(s.index, s.id, s.reason) for s in duplicates.skipped] == [(2, 5, "feed.duplicate_id")]
    assert duplicates.skipped_ids == [5]


def test_a_feed_of_only_invalid_positions_is_refused_with_the_first_problem() -> None:
    with pytest.raises(FeedInvalid) as caught:
        parse_feed(load("position_without_name.xml"))
    assert caught.value.code == "feed.no_valid_position"
    assert "id 9" in str(caught.value)


@pytest.mark.parametrize(("name", "expected"), sorted(REAL_SHAPED.items()))
def test_real_shaped_feeds_keep_the_valid_jobs_and_report_the_rest(
    name: str, expected: tuple[list[int], list[tuple[int, int | None, str]]]
) -> None:
    kept, skipped = expected
    jobs = parse_feed(load(name))
    assert [job.id for job in jobs] == kept
    assert [(s.index, s.id, s.reason) for s in jobs.skipped] == skipped
    assert jobs.skipped_ids == [job_id for _, job_id, _ in skipped if job_id is not None]
    assert all(f"#{s.index}" in s.detail for s in jobs.skipped)


def test_real_shaped_german_feed_fields() -> None:
    jobs = {job.id: job for job in parse_feed(load("real_de_mixed.xml"))}
    first = jobs[2101001]
    # The duplicate later in the feed does not replace the first position.
    assert first.name == "Fachkraft für Lagerlogistik (m/w/d)"
    assert (first.office, first.additional_offices) == ("München", ("Nürnberg", "Remote"))
    assert first.department == "Lager & Versand"
    assert first.description_sections == ("Deine Aufgaben", "Das bringst du mit")
    assert first.salary == FeedSalary(
        min=Decimal("2800"), max=Decimal("3200"), currency_code="EUR", currency_symbol="€",
        type="monthly",
    )
    assert first.created_at == datetime(2024, 3, 4, 7, 15, tzinfo=UTC)
    # Every optional element present but empty: None / empty, the job is kept.
    student = jobs[2101002]
    assert (student.name, student.employment_type, student.schedule) == (
        "Werkstudent Controlling (m/w/d)", "working_student", "part-time",
    )
    for attribute in (
        "office", "department", "recruiting_category", "seniority", "years_of_experience",
        "keywords", "occupation", "occupation_category", "subcompany", "created_at", "salary",
    ):
        assert getattr(student, attribute) is None, attribute
    assert (student.additional_offices, student.description_sections) == ((), ())
    assert jobs[2101003].created_at == datetime(2024, 3, 10, 6, 0, tzinfo=UTC)


def test_real_shaped_english_feed_keeps_the_first_of_three_duplicates() -> None:
    jobs = {job.id: job for job in parse_feed(load("real_en_mixed.xml"))}
    assert jobs[3300017].name == "Senior Frontend Engineer (f/m/d)"
    assert jobs[3300017].office == "Berlin"
    assert jobs[3300020].salary == FeedSalary(
        min=Decimal("45000"), max=None, currency_code="EUR", currency_symbol=None, type="yearly"
    )


def test_real_shaped_feed_with_unknown_elements_and_other_languages() -> None:
    jobs = {job.id: job for job in parse_feed(load("real_fr_unknown_elements.xml"))}
    assert jobs[4400001].name == "Chargé·e de clientèle – Île-de-France (H/F)"
    assert jobs[4400001].additional_offices == ("Lyon",)
    assert jobs[4400001].description_sections == ("Vos missions",)
    # An <id> nested in an unknown element is not the position's id.
    assert jobs[4400002].name == "Ingénieur·e DevOps (H/F)"
    assert 9999 not in jobs and 55 not in jobs
    assert jobs[4400003].keywords == "datos,español,Ñandú"
    assert jobs[4400003].description_sections == ("Tus tareas",)


def test_a_valid_feed_skips_nothing() -> None:
    jobs = parse_feed(load("normal.xml"))
    assert (jobs.skipped, jobs.skipped_ids) == ([], [])


# --- the error type -------------------------------------------------------


def test_feed_invalid_is_permanent_and_part_of_the_personio_tree() -> None:
    with pytest.raises(FeedInvalid) as caught:
        parse_feed(load("billion_laughs.xml"))
    error = caught.value
    assert isinstance(error, FeedError) and isinstance(error, PersonioError)
    assert error.retryable is False
    assert error.reason_code == error.code == "feed.dtd_forbidden"


def test_feed_errors_survive_pickling() -> None:
    url = "https://acme.jobs.personio.de/xml"
    error = FeedInvalid("feed.too_deep", "too deep", url=url, status=200)
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is FeedInvalid
    assert (clone.code, clone.url, clone.status, str(clone)) == (
        "feed.too_deep", "https://acme.jobs.personio.de/xml", 200, "too deep"
    )


def test_entity_and_external_reference_exceptions_map_to_codes() -> None:
    # With forbid_dtd=True these are unreachable through parse_feed (a DOCTYPE
    # is refused first), but their mapping is part of the contract.
    from defusedxml import EntitiesForbidden, ExternalReferenceForbidden

    from personio.feed import _parse_failure

    entities = EntitiesForbidden("lol", "lol", None, None, None, None)
    external = ExternalReferenceForbidden(None, None, "file:///etc/passwd", None)
    assert _parse_failure(entities, at_end=False).code == "feed.entities_forbidden"
    assert _parse_failure(external, at_end=False).code == "feed.external_reference_forbidden"
