"""The API's query-parameter parsers, pure: moments in both forms (RFC 3339 and Unix seconds)."""

from __future__ import annotations

import pytest

from collector.api.params import parse_time

T0 = 1796119200.0  # 2026-12-01T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1796119200", T0),
        ("1796119200.25", T0 + 0.25),
        ("0", 0.0),
        ("2026-12-01T10:00:00Z", T0),
        ("2026-12-01t10:00:00z", T0),
        ("2026-12-01T12:30:00+02:30", T0),
        ("2026-12-01T05:00:00-05:00", T0),
        ("2026-12-01T12:00:00 02:00", T0),  # a '+' that URL decoding made a space
        ("2026-12-01T10:00:00.5Z", T0 + 0.5),
        ("2016-12-31T23:59:60Z", 1483228800.0),  # a leap second: the moment after :59
        ("1970-01-01T00:00:00Z", 0.0),
    ],
)
def test_moments_in_either_form(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-12-01",  # a date is no moment
        "2026-12-01T10:00:00",  # no offset
        "2026-12-01 10:00:00Z",  # RFC 3339's T (or t) is required
        "2026-02-29T00:00:00Z",  # not a leap year
        "2026-12-01T24:00:00Z",
        "2026-12-01T10:00:00+24:00",
        "2026-12-01T10:00Z",
        "1e9",
        "-5",
        "+5",
        "1_000",
        "nan",
        "inf",
        "123456789012",  # 12 digits
        "١٧٩٦١١٩٢٠٠",  # digits, but not ASCII ones
    ],
)
def test_anything_else_is_no_moment(text: str) -> None:
    assert parse_time(text) is None
