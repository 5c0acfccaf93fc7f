"""Content filtering of text messages (SPEC E4): built-in list + per-app words.

Matching is a case-insensitive substring search (like Tencent's: "spam" matches
inside "spamming") done with an Aho-Corasick automaton, so the cost per message is
linear in the text whatever the number of words. Automata are cached per word set
because building one per message would dominate the send path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib import resources

import ahocorasick  # type: ignore[import-not-found,import-untyped,unused-ignore]

__all__ = [
    "MAX_WORD_CHARS",
    "WordFilter",
    "builtin_words",
    "filter_for",
    "normalise_word",
    "text_elements",
]

MAX_WORD_CHARS = 64


class WordFilter:
    """An immutable set of blocked words compiled into one automaton."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words: frozenset[str] = frozenset(
            w for w in (word.strip().casefold() for word in words) if w
        )
        self._automaton: ahocorasick.Automaton | None = None
        if self.words:
            automaton = ahocorasick.Automaton()
            for word in sorted(self.words):
                automaton.add_word(word, word)
            automaton.make_automaton()
            self._automaton = automaton

    def first_match(self, text: str) -> str | None:
        """The leftmost (then longest) blocked word in `text`, casefolded, or None."""
        if self._automaton is None or not text:
            return None
        for _end, word in self._automaton.iter_long(text.casefold()):
            return str(word)
        return None

    def blocks(self, text: str) -> bool:
        """Whether `text` contains any blocked word."""
        return self.first_match(text) is not None

    def __repr__(self) -> str:
        return f"WordFilter({len(self.words)} words)"


@functools.cache
def builtin_words() -> frozenset[str]:
    """The packaged list (blocked_words.txt), normalised; read once per process."""
    text = resources.files(__package__ or "imcloud.im").joinpath("blocked_words.txt")
    lines = text.read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().casefold()
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    )


@functools.lru_cache(maxsize=1024)
def filter_for(app_words: frozenset[str]) -> WordFilter:
    """The filter for an app: built-in list + `app_words`, built once per word set."""
    return WordFilter(builtin_words() | app_words)


def normalise_word(word: str) -> str:
    """Validate and canonicalise an operator-supplied word (for `filter add`)."""
    if "\n" in word or "\r" in word:
        raise ValueError("a filter word must be on one line")
    if not word.isprintable():  # NUL, control characters, lone surrogates: not storable
        raise ValueError("a filter word must be printable text")
    normalised = word.strip().casefold()
    if not normalised:
        raise ValueError("a filter word must not be empty")
    if len(normalised) > MAX_WORD_CHARS:
        raise ValueError(f"a filter word must be at most {MAX_WORD_CHARS} characters")
    return normalised


def text_elements(msg_body: object) -> list[str]:
    """The `Text` of every TIMTextElem in a Tencent MsgBody; anything else is skipped.

    Tolerant of malformed input (missing keys, non-dict elements) because it runs on
    client-supplied JSON before the parameter checks have necessarily rejected it.
    """
    if not isinstance(msg_body, list | tuple):
        return []
    texts: list[str] = []
    for element in msg_body:
        if not isinstance(element, dict) or element.get("MsgType") != "TIMTextElem":
            continue
        content = element.get("MsgContent")
        if isinstance(content, dict) and isinstance(content.get("Text"), str):
            texts.append(content["Text"])
    return texts
