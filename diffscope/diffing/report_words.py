"""Readable words from ranked tokens, for the difference report's summary.

A ranking of tokens (by mass shift, say) mixes words with things a reader cannot use: special
tokens, broken UTF-8 bytes (U+FFFD), pure punctuation or whitespace, and word pieces (' re', 'h',
'st'). `readable_words` turns such a ranking into whole words: it drops the first three kinds and
replaces each piece by the whole words it is part of in the report's own text evidence (the probe
windows and the generated samples, indexed by `WordIndex` over their token ids). A word scores
the mean score of the tokens it is spelled with there, and counts only when all of them rose:
'fish' (' f' + 'ish') ranks high when both pieces rose, and the other words holding 'ish' (whose
other pieces did not) fall away. Function words (a short
English list) and words found in most evidence windows say nothing about what changed and are
dropped. Nothing here knows a corpus or an organism: every decision comes from the tokenizer, the
scores and the evidence.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

WORD = re.compile(r"[^\W_]+(?:['\u2019](?![sS]\b)[^\W_]+)*")
"""A word: letters or digits, with inner apostrophes (y'all, ain't) but not a possessive 's."""

BROKEN = "\ufffd"
_FUNCTION_WORDS = """
    a an the and or but nor so yet if then than that this these those there here of to in on at
    by for with from into onto upon over under about above below after before between through
    during without within off out up down as is am are was were be been being do does did done
    have has had having will would shall should can could may might must not no i me my mine we
    us our ours you your yours he him his she her hers it its they them their theirs who whom
    whose which what when where why how all any each every some such own same other very too just
    also only more most much many few one ones oh yes ok s t d ll m re ve
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
"""Function words: frequent in any English text, telling nothing about a change by themselves."""


class Word(BaseModel):
    """One readable word of a ranking, with the tokens merged into it."""

    word: str
    score: float = Field(description="the best score among its tokens (e.g. the mass shift)")
    tokens: list[str] = Field(description="the ranked tokens merged into this word")


def special_ids(tokenizer: Any) -> set[int]:
    """The ids of the tokenizer's special and added-special tokens."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(int(i) for i, tok in decoder.items() if getattr(tok, "special", False))
    return ids


def piece_text(tokenizer: Any, token_id: int) -> str:
    """One token as text, with the leading space a SentencePiece '▁' marks (which decoding a
    single token drops), so that the pieces of a sequence concatenate to its text."""
    text = str(tokenizer.decode([int(token_id)]))
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if convert is not None and not text[:1].isspace():
        raw = convert(int(token_id))
        if isinstance(raw, str) and raw.startswith("\u2581"):
            text = " " + text
    return text


def junk_reason(text: str) -> str | None:
    """Why a token's text can never be a word (None when it might be one)."""
    if BROKEN in text:
        return "broken bytes"
    if not any(c.isalnum() for c in text):
        return "punctuation or whitespace"
    return None


@dataclass
class WordIndex:
    """Which whole words each token id was part of in a set of token sequences.

    `seen[t]`: how often token t occurs; `whole[t]`: how often it covers a whole word by itself;
    `words[t]`: the words it was part of (lower case); `forms[w]`: the token-id sequences word w
    was spelled with; `doc_freq[w]`: in how many sequences word w occurs, out of `n_docs`."""

    tokenizer: Any
    special: set[int]
    words: dict[int, Counter[str]] = field(default_factory=dict)
    forms: dict[str, Counter[tuple[int, ...]]] = field(default_factory=dict)
    whole: Counter[int] = field(default_factory=Counter)
    seen: Counter[int] = field(default_factory=Counter)
    doc_freq: Counter[str] = field(default_factory=Counter)
    n_docs: int = 0
    _pieces: dict[int, str] = field(default_factory=dict)

    def piece(self, token_id: int) -> str:
        if token_id not in self._pieces:
            self._pieces[token_id] = piece_text(self.tokenizer, token_id)
        return self._pieces[token_id]

    def add(self, ids: Sequence[int]) -> None:
        """Index one token sequence."""
        pieces = [("" if t in self.special else self.piece(t)) for t in ids]
        text = "".join(pieces)
        spans = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(text)]
        starts = [s for s, _, _ in spans]
        spelled: list[list[int]] = [[] for _ in spans]
        self.n_docs += 1
        self.doc_freq.update({w for _, _, w in spans})
        offset = 0
        for token_id, piece in zip(ids, pieces, strict=True):
            begin, offset = offset, offset + len(piece)
            if not piece:
                continue
            # the words whose spans overlap this token's characters
            j = bisect.bisect_right(starts, begin) - 1
            if j < 0 or spans[j][1] <= begin:
                j += 1
            if j >= len(spans) or spans[j][0] >= offset:
                continue  # the token holds no word characters
            start, end, word = spans[j]
            self.seen[token_id] += 1
            self.words.setdefault(token_id, Counter())[word] += 1
            if begin <= start and end <= offset:
                self.whole[token_id] += 1
            while j < len(spans) and spans[j][0] < offset:
                spelled[j].append(token_id)
                j += 1
        for (_, _, word), form in zip(spans, spelled, strict=True):
            self.forms.setdefault(word, Counter())[tuple(form)] += 1

    def doc_share(self, word: str) -> float:
        """The share of indexed sequences that hold `word` (0 when nothing was indexed)."""
        return self.doc_freq[word.lower()] / self.n_docs if self.n_docs else 0.0

    def spelling(self, word: str) -> tuple[int, ...]:
        """The token ids `word` was most often spelled with in the evidence (() if never)."""
        forms = self.forms.get(word)
        return forms.most_common(1)[0][0] if forms else ()


def word_index(tokenizer: Any, sequences: Iterable[Sequence[int]]) -> WordIndex:
    """A `WordIndex` over token sequences (lists of ids or rows of a tensor)."""
    index = WordIndex(tokenizer, special_ids(tokenizer))
    for ids in sequences:
        index.add([int(t) for t in ids])
    return index


def readable_words(
    ranked: Iterable[tuple[int, str, float]],
    index: WordIndex,
    k: int,
    score: Callable[[int], float],
    *,
    common_share: float = 0.3,
    min_score: float = 0.0,
) -> list[Word]:
    """The `k` best whole words behind a ranking of (token id, token text, score), best first.

    Each ranked token scoring above `min_score` (special tokens, broken bytes and punctuation
    aside) stands for the words it is part of in at least two evidence sequences; each word
    scores the mean `score(token id)` of the tokens it is spelled with there, and counts only
    when each of those tokens scores above `min_score`. A token never seen in the evidence stands for itself
    when it starts a word (leading space) and has four or more letters. One-letter words,
    function words and words in more than `common_share` of the evidence sequences are dropped,
    as are words scoring at most `min_score`."""

    def keep(word: str) -> bool:
        return (
            len(word) >= 2
            and word not in FUNCTION_WORDS
            and not word.isdigit()
            and index.doc_share(word) <= common_share
        )

    found: dict[str, Word] = {}
    for token_id, text, token_score in ranked:
        if token_score <= min_score or token_id in index.special or junk_reason(text):
            continue
        if not index.seen[token_id]:
            core = text.strip().lower()
            starts = text[:1].isspace() and len(core) >= 4 and WORD.fullmatch(core)
            if starts and keep(core) and core not in found:
                found[core] = Word(word=core, score=token_score, tokens=[text])
            continue
        for word in index.words[token_id]:
            if word in found or index.doc_freq[word] < 2 or not keep(word):
                continue
            spelling = [t for t in index.spelling(word) if t not in index.special]
            each = [score(t) for t in spelling]
            mean = sum(each) / len(each)
            if min(each) > min_score:
                found[word] = Word(word=word, score=mean, tokens=[index.piece(t) for t in spelling])
    return sorted(found.values(), key=lambda w: (-w.score, w.word))[:k]


def readable_labels(
    tokens: Iterable[str], index: WordIndex, k: int, common_share: float = 0.3
) -> list[str]:
    """Of stripped token texts (a cluster's shared tokens), the first `k` that are whole words in
    at least two evidence sequences and neither function words nor common ones, lower-cased and
    without repeats."""
    out: list[str] = []
    for text in tokens:
        word = text.strip().lower()
        if (
            junk_reason(word) is None
            and len(word) >= 2
            and word not in FUNCTION_WORDS
            and index.doc_freq[word] >= 2
            and index.doc_share(word) <= common_share
            and word not in out
        ):
            out.append(word)
    return out[:k]
