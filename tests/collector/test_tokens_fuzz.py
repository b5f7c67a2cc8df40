"""Token files and Authorization headers as an attacker or a bad edit writes them: property-based.
Parsing gives tokens or a SettingsError, never another exception, and no error ever quotes a
token; a header never crashes ``bearer``, and only a listed token matches."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.errors import SettingsError
from collector.tokens import TokenFile, bearer, parse

SECRET = "s3cr3t-token-value-0123456789"
LABELS = {"read", "admin"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.booleans())
def test_any_token_file_parses_or_fails_with_a_settings_error_that_quotes_no_token(
    text: str, with_secret: bool
) -> None:
    body = f"admin {SECRET}\n{text}" if with_secret else text
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokens"
        path.write_text(body, encoding="utf-8", errors="surrogateescape")
        try:
            tokens = parse(path, "--api-tokens", LABELS.__contains__)
        except SettingsError as e:
            assert SECRET not in str(e)
            for word in text.split():
                if len(word) >= 16:  # anything shaped like a token is never echoed
                    assert word not in str(e)
            return
        assert all(t.label in LABELS for t in tokens)
        assert all(SECRET not in t.name for t in tokens)


def test_a_line_written_the_wrong_way_round_does_not_put_the_token_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{SECRET} admin\n")
    try:
        parse(path, "--api-tokens", LABELS.__contains__)
    except SettingsError as e:
        assert SECRET not in str(e) and "not shown" in str(e), str(e)
    else:
        raise AssertionError("a token in the label's place parsed")
    path.write_text("reader " + SECRET + "\n")
    try:
        parse(path, "--api-tokens", LABELS.__contains__)
    except SettingsError as e:
        assert "'reader' is not a label" in str(e) and SECRET not in str(e)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=200)))
def test_any_authorization_header_is_parsed_without_raising(header: str | None) -> None:
    got = bearer(header)
    assert got is None or (got and got == got.strip())


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=100))
def test_only_the_listed_token_matches(presented: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokens"
        path.write_text(f"read {SECRET}\n")
        tokens = TokenFile(path, "--api-tokens", LABELS.__contains__)
        found = tokens.match(presented)
        assert (found is not None) == (presented == SECRET)
        assert tokens.match(SECRET) is not None
