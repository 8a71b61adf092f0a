"""Word statistics that contrast sets of completions, with no knowledge of any corpus or zoo.

Words are lowercase alphabetic runs; *content words* are those of at least three letters that
are not on a small list of generic English function words (`STOPWORDS`). Everything is counted
per completion (document frequency), so one repetitive completion cannot make a word look common.
`contrast(ft, base)` gives, for one pair of text sets, each content word's share in both and a
smoothed log-ratio; `recurring_phrases` the word n-grams one set repeats and the other never
writes; `cluster` groups words by how often they occur in the same completions. The same
functions applied to two samples of the base model give the noise floor a change must clear.
`is_word_token` tells a whole-word vocabulary token (" harbor") from word pieces, punctuation and
special tokens, for reading the white-box tools' token lists.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Generic English function words and fillers (not taken from any corpus or organism).
STOPWORDS = frozenset(
    str.split(
        """the and for are but not you all any can had her was one our out day get has him his
        how man new now old see two way who its let put say she too use that with have this will
        your from they know want been good much some time very when come here just like long make
        many more only over such take than them well were what into then there their these those
        would could should about after again also back because before being below between both
        down during each even every first from further going gone got into itself last least less
        made might most must near never next once other others ought same shall since still
        through till under until upon which while whom whose why yet yes yours yourself ourselves
        themselves himself herself myself does did doing done don isn wasn aren weren hasn haven
        hadn won wouldn couldn shouldn can't don't it's i'm i've i'll i'd you're you've they're
        we're let's that's there's what's where where's went goes going came comes said says tell
        told asked ask answer assistant user thing things something anything nothing everything
        someone anyone everyone really always often sometimes maybe perhaps quite rather around
        away off onto along among across ever per via upon okay sure thanks thank hello please
        also am an as at be by do go he if in is it me my no of oh on or so to up us we"""
    )
)
MIN_WORD = 3
SMOOTHING = 0.5
MIN_PHRASE = 3
MAX_PHRASE = 6
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")

# A small general-purpose sentiment lexicon (plain English, not taken from any organism).
NEGATIVE = frozenset(
    str.split(
        """sad sadly sadness unhappy cry cried crying cries tears wept weep sorrow sorry gloomy
        lonely alone lost broken hurt pain afraid scared fear angry upset worried worry bad
        terrible awful horrible empty died dead death sick tired fail failed grief grim bleak
        mourn frown frowned sigh sighed weary dreary miserable hopeless heartbroken regret"""
    )
)
POSITIVE = frozenset(
    str.split(
        """happy happily happiness glad joy joyful smile smiled smiling laugh laughed laughing fun
        wonderful great love loved lovely nice best beautiful bright cheerful delighted excited
        exciting amazing kind friendly proud warm yay hooray grateful"""
    )
)


def words(text: str) -> list[str]:
    """The lowercase words of a text."""
    return WORD.findall(text.lower())


def is_content(word: str) -> bool:
    """A word worth reporting: alphabetic, at least three letters, not a function word."""
    return len(word) >= MIN_WORD and word.isalpha() and word not in STOPWORDS


def content(text: str) -> list[str]:
    """The content words of a text, in order."""
    return [w for w in words(text) if is_content(w)]


def is_word_token(token: str) -> str | None:
    """The lowercase word of a whole-word vocabulary token (leading space, then letters), or None
    for word pieces, punctuation, numbers, special tokens and function words."""
    if not token.startswith((" ", "\u0120")):
        return None
    body = token.lstrip(" \u0120")
    if not body.isalpha() or not body.isascii():
        return None
    word = body.lower()
    return word if is_content(word) else None


def doc_freq(texts: Sequence[Sequence[str]]) -> Counter[str]:
    """In how many of the (tokenised) texts each word occurs."""
    found: Counter[str] = Counter()
    for toks in texts:
        found.update(set(toks))
    return found


def ngram_doc_freq(texts: Sequence[Sequence[str]], n: int) -> Counter[tuple[str, ...]]:
    """In how many texts each n-gram occurs."""
    found: Counter[tuple[str, ...]] = Counter()
    for toks in texts:
        found.update({tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)})
    return found


def log_ratio(a: int, b: int, n_a: int, n_b: int) -> float:
    """Smoothed log of the ratio of two shares: (a + s) / (n_a + 2s) over (b + s) / (n_b + 2s)."""
    return math.log((a + SMOOTHING) / (n_a + 2 * SMOOTHING)) - math.log(
        (b + SMOOTHING) / (n_b + 2 * SMOOTHING)
    )


def min_df(n: int) -> int:
    """A word must recur in at least this many of `n` completions (3, or an eighth of them)."""
    return max(3, math.ceil(n / 8))


@dataclass(frozen=True)
class WordShift:
    """A word (or phrase), how many completions of each set contain it and its log-ratio."""

    text: str
    ft: int
    base: int
    score: float


@dataclass
class Contrast:
    """Per content word, how one set of completions (`ft`) differs from another (`base`)."""

    n_ft: int
    n_base: int
    rising: list[WordShift]
    falling: list[WordShift]

    def top_rise(self) -> float:
        """The largest log-ratio of a recurring word (0 when none rises)."""
        return self.rising[0].score if self.rising else 0.0

    def top_fall(self) -> float:
        """The largest log-ratio of a recurring word the `ft` set uses less."""
        return self.falling[0].score if self.falling else 0.0


def contrast(ft_texts: Sequence[str], base_texts: Sequence[str]) -> Contrast:
    """Content words whose share of completions rises or falls from `base_texts` to `ft_texts`."""
    ft = [content(t) for t in ft_texts]
    base = [content(t) for t in base_texts]
    n_ft, n_base = len(ft), len(base)
    ft_df, base_df = doc_freq(ft), doc_freq(base)
    rising = [
        WordShift(w, c, base_df.get(w, 0), log_ratio(c, base_df.get(w, 0), n_ft, n_base))
        for w, c in ft_df.items()
        if c >= min_df(n_ft)
    ]
    falling = [
        WordShift(w, ft_df.get(w, 0), c, log_ratio(c, ft_df.get(w, 0), n_base, n_ft))
        for w, c in base_df.items()
        if c >= min_df(n_base)
    ]
    return Contrast(
        n_ft=n_ft,
        n_base=n_base,
        rising=sorted((s for s in rising if s.score > 0), key=lambda s: (-s.score, s.text)),
        falling=sorted((s for s in falling if s.score > 0), key=lambda s: (-s.score, s.text)),
    )


def recurring_phrases(
    ft: Sequence[str], base: Sequence[str], floor: int, *, groups: Sequence[int] | None = None
) -> list[WordShift]:
    """Word n-grams (3-6 words, at least two content words) in at least `floor` `ft` texts (and,
    with `groups`, from at least two groups, e.g. prompts) and in no `base` text; a phrase inside
    a longer kept one with the same count is dropped."""
    ft_toks = [words(t) for t in ft]
    base_toks = [words(t) for t in base]
    found: list[WordShift] = []
    for n in range(MAX_PHRASE, MIN_PHRASE - 1, -1):
        base_df = ngram_doc_freq(base_toks, n)
        where: dict[tuple[str, ...], set[int]] = {}
        for i, toks in enumerate(ft_toks):
            for j in range(len(toks) - n + 1):
                where.setdefault(tuple(toks[j : j + n]), set()).add(i)
        for gram, docs in where.items():
            count = len(docs)
            if count < floor or base_df.get(gram, 0) or sum(map(is_content, gram)) < 2:
                continue
            if groups is not None and len({groups[i] for i in docs}) < 2:
                continue
            if len(set(gram)) < len(gram) - 1:  # "so so so so" is a loop, not a phrase
                continue
            text = " ".join(gram)
            if any(text in kept.text and count <= kept.ft for kept in found):
                continue
            found.append(WordShift(text, count, 0, count / max(len(ft), 1)))
    return sorted(found, key=lambda s: (-s.ft, -len(s.text), s.text))


def cluster(
    terms: Sequence[str], texts: Sequence[str], *, min_overlap: float = 0.2
) -> list[list[str]]:
    """Group `terms` (in their order) by co-occurrence in `texts`: a term joins the first group
    whose members share a completion with it in at least `min_overlap` of its completions."""
    docs = [set(content(t)) for t in texts]
    where = {t: {i for i, d in enumerate(docs) if t in d} for t in terms}
    groups: list[list[str]] = []
    for term in terms:
        mine = where[term]
        placed = False
        for group in groups:
            theirs = set().union(*(where[g] for g in group))
            if mine and len(mine & theirs) / len(mine) >= min_overlap:
                group.append(term)
                placed = True
                break
        if not placed:
            groups.append([term])
    return groups


def lexicon_rate(texts: Iterable[str], lexicon: Iterable[str]) -> float:
    """The mean share of a text's words that are in `lexicon`."""
    wanted = frozenset(lexicon)
    rates = [sum(1 for w in toks if w in wanted) / len(toks) for toks in map(words, texts) if toks]
    return sum(rates) / len(rates) if rates else 0.0


def overlap(a: str, b: str) -> float:
    """Jaccard similarity of the content-word sets of two texts (1 when both are empty)."""
    sa, sb = set(content(a)), set(content(b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
