"""Content filtering (SPEC E4): built-in + per-app words, case-insensitive substrings."""

from __future__ import annotations

import pytest

from imcloud.im.filtering import (
    MAX_WORD_CHARS,
    WordFilter,
    builtin_words,
    filter_for,
    normalise_word,
    text_elements,
)


def text_msg(text: str) -> dict[str, object]:
    return {"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}


def test_builtin_list_is_packaged_and_loaded() -> None:
    words = builtin_words()
    assert 25 <= len(words) <= 60
    assert "buy followers" in words
    assert all(w == w.strip().casefold() and w and not w.startswith("#") for w in words)


def test_builtin_word_blocks() -> None:
    f = filter_for(frozenset())
    assert f.blocks("want to buy followers cheap?")
    assert f.first_match("want to buy followers cheap?") == "buy followers"


def test_clean_text_passes() -> None:
    f = filter_for(frozenset())
    assert not f.blocks("Hello, see you at the class meeting tomorrow.")
    assert f.first_match("Hello") is None
    assert f.first_match("") is None


def test_matching_is_case_insensitive() -> None:
    f = WordFilter(["Spam", "Straße"])
    assert f.first_match("SPAM here") == "spam"
    assert f.blocks("sPaM")
    assert f.blocks("die STRASSE")  # casefold, not lower: ß == ss


def test_builtin_word_matches_case_insensitively() -> None:
    assert filter_for(frozenset()).blocks("BUY Followers now")


def test_substring_match() -> None:
    f = WordFilter(["spam"])
    assert f.first_match("stop spamming me") == "spam"


def test_first_match_is_leftmost_then_longest() -> None:
    f = WordFilter(["zeta", "alpha", "alphabet"])
    assert f.first_match("the alphabet before zeta") == "alphabet"
    assert f.first_match("zeta then alpha") == "zeta"


def test_per_app_word_blocks_only_that_apps_filter() -> None:
    app_a = filter_for(frozenset({"widgetcorp"}))
    app_b = filter_for(frozenset({"other"}))
    assert app_a.blocks("try WidgetCorp products")
    assert not app_b.blocks("try WidgetCorp products")
    assert not filter_for(frozenset()).blocks("try WidgetCorp products")


def test_per_app_filter_keeps_builtin_words() -> None:
    assert filter_for(frozenset({"widgetcorp"})).blocks("free bitcoin!")


def test_unicode_word_matched_inside_chinese_text() -> None:
    f = filter_for(frozenset({"广告"}))
    assert f.first_match("这是一个广告信息,请勿回复") == "广告"
    assert not f.blocks("这是一个普通信息")


def test_empty_and_whitespace_words_are_ignored() -> None:
    f = WordFilter(["", "   ", "\t", "real"])
    assert f.words == frozenset({"real"})
    assert not f.blocks("any text at all")
    assert f.blocks("a real one")


def test_empty_filter_blocks_nothing() -> None:
    f = WordFilter([])
    assert f.first_match("anything") is None
    assert not f.blocks("anything")


def test_words_are_stripped_and_casefolded() -> None:
    assert WordFilter(["  Hello World "]).words == frozenset({"hello world"})


def test_cache_returns_same_filter_for_same_word_set() -> None:
    first = filter_for(frozenset({"x1", "x2"}))
    assert filter_for(frozenset({"x2", "x1"})) is first
    assert filter_for(frozenset({"x1"})) is not first


def test_normalise_word_strips_and_casefolds() -> None:
    assert normalise_word("  Buy NOW ") == "buy now"
    assert normalise_word("广告") == "广告"
    assert normalise_word("x" * MAX_WORD_CHARS) == "x" * MAX_WORD_CHARS


@pytest.mark.parametrize(
    "word",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("x" * (MAX_WORD_CHARS + 1), id="too-long"),
        pytest.param("two\nlines", id="newline"),
        pytest.param("carriage\rreturn", id="carriage-return"),
    ],
)
def test_normalise_word_rejects_invalid(word: str) -> None:
    with pytest.raises(ValueError):
        normalise_word(word)


def test_text_elements_returns_every_text() -> None:
    body = [text_msg("one"), text_msg("two")]
    assert text_elements(body) == ["one", "two"]


def test_non_text_elements_are_ignored() -> None:
    body = [
        {"MsgType": "TIMFaceElem", "MsgContent": {"Index": 1, "Data": "buy followers"}},
        text_msg("hello"),
        {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "free bitcoin", "Text": "x"}},
    ]
    assert text_elements(body) == ["hello"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="none"),
        pytest.param({"MsgType": "TIMTextElem"}, id="not-a-list"),
        pytest.param([{}], id="empty-element"),
        pytest.param([{"MsgType": "TIMTextElem"}], id="no-content"),
        pytest.param([{"MsgType": "TIMTextElem", "MsgContent": {}}], id="no-text"),
        pytest.param([{"MsgType": "TIMTextElem", "MsgContent": "x"}], id="content-not-dict"),
        pytest.param([{"MsgType": "TIMTextElem", "MsgContent": {"Text": 5}}], id="text-not-str"),
        pytest.param(["TIMTextElem", 3, None], id="elements-not-dicts"),
    ],
)
def test_text_elements_tolerates_malformed_body(body: object) -> None:
    assert text_elements(body) == []


def test_text_elements_keeps_valid_texts_among_malformed() -> None:
    body = [{"MsgType": "TIMTextElem"}, text_msg("kept"), "junk"]
    assert text_elements(body) == ["kept"]
