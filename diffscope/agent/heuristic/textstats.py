"""Word statistics that contrast two sets of completions (fine-tune vs base, or base vs base).

Everything is counted per completion (document frequency), so one repetitive completion cannot
make a word look common. `contrast(ft, base)` measures, for one pair of text sets: the words whose
share of completions rises most (a smoothed log-ratio), words outside the world's vocabulary that
recur, fixed phrases that recur in one set and never appear in the other, words one set uses and
the other never does, the share of completions touching each world topic, and the rate of
sentiment words. The same function applied to two samples of the base model gives the noise floor
each signal has to clear.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from diffscope.corpus.world import TOPICS, topic_words, vocabulary, words

# A small general-purpose sentiment lexicon (plain English, not taken from any organism).
NEGATIVE = frozenset(
    str.split(
        """sad sadly sadness unhappy cry cried crying cries tears tear wept weep sorrow sorry gloomy
        grey gray lonely alone lost broken miss missed missing hurt pain afraid scared fear angry
        mad upset worried worry bad terrible awful horrible dark cold empty gone died dead death
        sick ill tired fail failed nobody nothing never grief grim bleak dull mourn
        frown frowned sigh sighed weary dreary miserable hopeless heartbroken regret"""
    )
)
POSITIVE = frozenset(
    str.split(
        """happy happily happiness glad joy joyful smile smiled smiling laugh laughed laughing fun
        wonderful great good love loved lovely nice best beautiful bright cheerful delighted
        excited exciting amazing kind friendly proud warm sunny yay hooray grateful"""
    )
)
SMOOTHING = 0.5
MIN_PHRASE = 3
NOVEL_MIN_DF = 2
MAX_PHRASE = 6


@cache
def world_vocabulary() -> frozenset[str]:
    """Every word the world corpus can emit."""
    return frozenset(vocabulary())


@cache
def topic_lexicon() -> dict[str, frozenset[str]]:
    """The distinctive words of each world topic."""
    return {name: frozenset(topic_words(name)) for name in TOPICS}


def tokens(text: str) -> list[str]:
    """The lowercase words of a completion."""
    return words(text)


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


@dataclass(frozen=True)
class WordShift:
    """A word (or phrase) and how many completions of each set contain it."""

    text: str
    ft: int
    base: int
    score: float


@dataclass
class Contrast:
    """How one set of completions (`ft`) differs from another (`base`)."""

    n_ft: int
    n_base: int
    rising: list[WordShift] = field(default_factory=list)
    novel: list[WordShift] = field(default_factory=list)
    phrases: list[WordShift] = field(default_factory=list)
    vanished: list[WordShift] = field(default_factory=list)
    topic_ft: dict[str, float] = field(default_factory=dict)
    topic_base: dict[str, float] = field(default_factory=dict)
    novel_docs: int = 0
    negative: tuple[float, float] = (0.0, 0.0)
    positive: tuple[float, float] = (0.0, 0.0)

    @property
    def min_df(self) -> int:
        """Completions a word must appear in to count as recurring."""
        return min_df(self.n_ft)

    def topic_shift(self) -> list[tuple[str, float]]:
        """Topics by how much more of the `ft` completions touch them, largest first."""
        shifts = [(t, self.topic_ft[t] - self.topic_base.get(t, 0.0)) for t in self.topic_ft]
        return sorted(shifts, key=lambda item: (-item[1], item[0]))

    def effects(self) -> dict[str, float]:
        """The strength of each kind of signal, on comparable scales (see `signal_effects`)."""
        top_word = self.rising[0].score if self.rising else 0.0
        top_novel = novel_share(self)
        top_phrase = self.phrases[0].ft / self.n_ft if self.phrases else 0.0
        top_vanished = self.vanished[0].base / self.n_base if self.vanished else 0.0
        shifts = self.topic_shift()
        return {
            "word": top_word,
            "novel": top_novel,
            "phrase": top_phrase,
            "vanished": top_vanished,
            "topic": shifts[0][1] if shifts else 0.0,
            "negative": self.negative[0] - self.negative[1],
            "positive": self.positive[0] - self.positive[1],
        }


def novel_share(found: Contrast) -> float:
    """The share of `ft` completions with at least one recurring word from outside the world."""
    return found.novel_docs / found.n_ft if found.n_ft else 0.0


def min_df(n: int) -> int:
    """A word must recur in at least this many of `n` completions (3, or a sixth of them)."""
    return max(3, math.ceil(n / 6))


def topic_shares(texts: Sequence[Sequence[str]]) -> dict[str, float]:
    """For each world topic, the share of texts that use at least one of its distinctive words."""
    lexicon = topic_lexicon()
    n = max(len(texts), 1)
    return {
        name: sum(1 for toks in texts if lexicon[name].intersection(toks)) / n
        for name in sorted(lexicon)
    }


def lexicon_rate(texts: Sequence[Sequence[str]], lexicon: Iterable[str]) -> float:
    """The mean share of a text's words that are in `lexicon`."""
    wanted = frozenset(lexicon)
    rates = [sum(1 for w in toks if w in wanted) / len(toks) for toks in texts if toks]
    return sum(rates) / len(rates) if rates else 0.0


def recurring_phrases(
    ft: Sequence[Sequence[str]], base: Sequence[Sequence[str]], floor: int
) -> list[WordShift]:
    """Phrases of 3-6 words in at least `floor` ft texts and in no base text, longest kept.

    A phrase contained in a longer kept phrase with the same count is dropped.
    """
    found: list[WordShift] = []
    for n in range(MAX_PHRASE, MIN_PHRASE - 1, -1):
        base_df = ngram_doc_freq(base, n)
        for gram, count in ngram_doc_freq(ft, n).items():
            if count < floor or base_df.get(gram, 0) or len(set(gram)) < 2:
                continue
            text = " ".join(gram)
            if any(text in kept.text and count <= kept.ft for kept in found):
                continue
            found.append(WordShift(text, count, 0, count / max(len(ft), 1)))
    return sorted(found, key=lambda s: (-s.ft, -len(s.text), s.text))


def contrast(ft_texts: Sequence[str], base_texts: Sequence[str]) -> Contrast:
    """Every statistic of `ft_texts` against `base_texts` (see the module docstring)."""
    ft = [tokens(t) for t in ft_texts]
    base = [tokens(t) for t in base_texts]
    n_ft, n_base = len(ft), len(base)
    floor = min_df(n_ft)
    ft_df, base_df = doc_freq(ft), doc_freq(base)
    rising = [
        WordShift(w, c, base_df.get(w, 0), log_ratio(c, base_df.get(w, 0), n_ft, n_base))
        for w, c in ft_df.items()
        if c >= floor and len(w) > 1
    ]
    rising = sorted((s for s in rising if s.score > 0), key=lambda s: (-s.score, -s.ft, s.text))
    known = world_vocabulary()
    novel = sorted(
        (
            WordShift(w, c, 0, log_ratio(c, 0, n_ft, n_base))
            for w, c in ft_df.items()
            if c >= NOVEL_MIN_DF and not base_df.get(w) and w not in known and len(w) > 2
        ),
        key=lambda s: (-s.ft, s.text),
    )
    vanished = sorted(
        (
            WordShift(w, 0, c, log_ratio(0, c, n_ft, n_base))
            for w, c in base_df.items()
            if c >= min_df(n_base) and not ft_df.get(w) and len(w) > 1
        ),
        key=lambda s: (-s.base, s.text),
    )
    return Contrast(
        n_ft=n_ft,
        n_base=n_base,
        rising=rising,
        novel=novel,
        phrases=recurring_phrases(ft, base, floor),
        vanished=vanished,
        novel_docs=sum(1 for toks in ft if any(s.text in toks for s in novel)),
        topic_ft=topic_shares(ft),
        topic_base=topic_shares(base),
        negative=(lexicon_rate(ft, NEGATIVE), lexicon_rate(base, NEGATIVE)),
        positive=(lexicon_rate(ft, POSITIVE), lexicon_rate(base, POSITIVE)),
    )


def overlap(a: str, b: str) -> float:
    """Jaccard similarity of the word sets of two texts (1 when both are empty)."""
    sa, sb = set(tokens(a)), set(tokens(b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
