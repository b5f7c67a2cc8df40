"""The fast exposition parser: identical to the reference parser, or it steps aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.promtext import MetricsParseError, fast_parse, parse_metrics_text, reference_parse
from demo.standin_vllm import Engine


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN (repr spells every float exactly)."""
    return repr(a) == repr(b)


def test_every_real_capture_takes_the_fast_path_with_the_reference_result(real_fixtures: Path) -> None:
    captures = sorted((real_fixtures / "metrics").iterdir())
    assert captures
    for path in captures:
        text = path.read_text(encoding="utf-8")
        fast = fast_parse(text)
        assert fast is not None, path.name
        assert same(fast, reference_parse(text)), path.name


def test_the_stand_in_vllm_scrape_parses_the_same_both_ways() -> None:
    engine = Engine("m", "m", "float16", 2048, 16, 0.9, True, "auto")
    for _ in range(8):
        engine.tick(0.25)
    text = engine.metrics()
    assert same(fast_parse(text), reference_parse(text))


@pytest.mark.parametrize(
    "text",
    [
        # counters declared with and without _total, untyped strays, _created beside a counter
        "# TYPE a_total counter\na_total 1\n# TYPE b counter\nb 2\nstray 3\n",
        '# HELP c_total Help.\n# TYPE c_total counter\nc_total{x="1"} 4\nc_created 1.7e9\n',
        # histogram and summary suffixes, HELP after TYPE, blank lines, no trailing newline
        '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n\n'
        '# TYPE s summary\n# HELP s Late help.\ns{quantile="0.5"} 1\ns_sum 2\ns_count 3',
        # values: signs, exponents, Inf and NaN; labels with spaces and a trailing comma
        '# TYPE g gauge\ng{a = "x y" , b="",} -1.5e-3\ng{a="2"} +Inf\ng{a="3"} NaN\n',
        # a family repeated later, plain comments, and HELP naming another family
        "# TYPE r gauge\nr 1\n# just a comment\n# HELP q Other.\nq 2\n# TYPE r gauge\nr 3\n",
        "\r\n# TYPE w gauge\r\nw 1\r\n",
    ],
)
def test_fast_path_matches_the_reference_on_edge_shapes(text: str) -> None:
    fast = fast_parse(text)
    assert fast is not None
    assert same(fast, reference_parse(text))


@pytest.mark.parametrize(
    "text",
    [
        'm{path="a\\\\b"} 1\n',  # an escape in a label value
        "m 1 1700000000000\n",  # a timestamp
        '{"utf8.name"} 1\n',  # a quoted metric name
        "# HELP m Help with a \\n newline.\nm 1\n",  # an escape in HELP
        "# TYPE m\nm 1\n",  # malformed TYPE
        'm{a="1",a="2"} 1\n',  # a repeated label
        'm{a="1"} one\n',  # not a number
    ],
)
def test_anything_outside_the_common_shape_goes_to_the_reference_parser(text: str) -> None:
    assert fast_parse(text) is None
    try:
        expected = reference_parse(text)
    except MetricsParseError as e:
        with pytest.raises(MetricsParseError) as info:
            parse_metrics_text(text)
        assert info.value.line == e.line
    else:
        assert same(parse_metrics_text(text), expected)
