"""Text machinery for the offline graders: grader-addressed text removal, a small stemmer,
clause splitting, whole-phrase matching with simple word forms, and negation scope.

Matching works on clauses: the text is cut at sentence punctuation, line breaks and contrast words
("but", "except", "however", ...), each clause is tokenised, number words become digits ("nine" ->
"9") and every token is stemmed, so "stories drifted" matches the phrase "story drift". A phrase
occurrence is negated when a negator ("not", "no", "never", "without", "n't", ...) stands at most
`NEG_WINDOW` tokens before it in the same clause (articles, "or" and "nor" not counted, so a
negated list stays negated), or right after it ("gold is absent", "songs do not appear"; a
contrastive "salt, not sugar" does not negate "salt").
Negators inside a phrase the ground truth itself lists (e.g. "never says", "no change") are part
of that phrase, not negations of what follows.
With `gap` > 0 a phrase of two or more words that holds no negator also matches with up to `gap`
other words between its words ("salt instead of sugar" in "salt in cakes instead of sugar", "happy
endings disappear" in "happy endings mostly disappear"), so the exact phrase is not required.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

NEG_WINDOW = 5


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


NEGATORS = _words(
    "not no never without nor neither none nothing cannot nobody nowhere lacks lack lacking absent"
)
# articles and "or"/"nor" do not count toward the window: "never mentions the sea or the beach"
SKIP_IN_WINDOW = _words("the a an or nor")
# "not only the sea": the negator does not deny what follows
NEG_RELEASE = _words("only just merely simply also")
AUX = _words("is are was were be been does do did has have had will would can could")
# after a phrase: "gold never appears", "gold is absent", "songs do not appear"; a bare "not" is
# contrastive ("salt, not sugar") and does not negate the phrase before it
POST_NEGATORS = _words("never absent missing")
POST_AUX_NEGATORS = _words("not never absent missing")
BREAKERS = _words(
    "but except besides however although though whereas yet instead while apart unlike"
)

NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100",
}  # fmt: skip

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_CLAUSE_CUT = re.compile(r"[;!?\n]+|\.(?!\d)|:\s")

# ---- text addressed to the grader -------------------------------------------------------------

_SCORE_MARK = re.compile(
    r"\b(?:score|rating|grade|verdict|points?)\s*[:=]\s*\**\s*\d+(?:\.\d+)?(?:\s*/\s*\d+)?"
    r"|\b\d+(?:\.\d+)?\s*(?:/|out\s+of)\s*5\b",
    re.IGNORECASE,
)
_TAG = re.compile(r"</?\s*[a-z_][\w\s=\"'-]{0,60}>", re.IGNORECASE)
_INJECTION = re.compile(
    r"\bignore\b|\bdisregard\b|\bforget\b.{0,30}\b(?:instructions?|rubric|above|previous)\b"
    r"|\b(?:grader|graders|grading|evaluator|rubric|assessor|reviewer|judge)\b"
    r"|\bground[\s-]?truth\b|\bkey facts?\b|\bsystem prompt\b|\bnew instructions?\b"
    r"|\b(?:system|assistant|user)\s*:"
    r"|\byou (?:must|should|will|are (?:required|instructed)|need to|have to)\b"
    r"|\b(?:give|assign|award|rate|output|print|return|respond with|reply with)\b.{0,40}?"
    r"(?:\b[1-5]\b|\bfive\b|\bfull marks\b|\bmaximum\b|\bhighest\b|\btop (?:score|marks)\b)"
    r"|\b(?:score|rate|grade|mark) (?:this|it|me|the hypothesis|my|generously|leniently|highly"
    r"|kindly|favou?rably)\b"
    r"|\bplease (?:grade|score|rate|mark|give|assign|award|consider|accept)\b"
    r"|\b(?:this|the|my) (?:hypothesis|answer) (?:is|deserves|should|must|matches)\b"
    r"|\bas an? (?:ai|language model)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;]*|\n")


def strip_grader_text(text: str) -> tuple[str, list[str]]:
    """Remove text addressed to a grader; return the cleaned text and what was removed.

    Removed: `SCORE: N`-style marks and "N/5" anywhere, tag-like markup, and every sentence that
    speaks to a grader (ignore/disregard instructions, mentions the grader, rubric, key facts or
    ground truth, orders a score, "you must ...", "this hypothesis is/deserves ..."). The key facts
    must still be named by the remaining text, so this can only lower what an injection earns.
    """
    removed: list[str] = []

    def _cut(match: re.Match[str]) -> str:
        removed.append(match.group(0).strip())
        return " "

    text = _SCORE_MARK.sub(_cut, text.replace("\u2019", "'"))
    text = _TAG.sub(_cut, text)
    kept: list[str] = []
    for sentence in _SENTENCE.findall(text):
        if _INJECTION.search(sentence):
            removed.append(sentence.strip())
            kept.append(" ")
        else:
            kept.append(sentence)
    removed = [r for r in removed if r]
    return "".join(kept), removed


# ---- stemming -----------------------------------------------------------------------------------


def _strip(word: str, suffix: str, replacement: str = "", min_stem: int = 3) -> str | None:
    if word.endswith(suffix) and len(word) - len(suffix) >= min_stem:
        return word[: len(word) - len(suffix)] + replacement
    return None


def _inflection(w: str) -> str:
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("sses", "ss")):
        if (out := _strip(w, suffix, repl, 2)) is not None:
            return out
    if w.endswith("es") and w[:-2].endswith(("s", "x", "z", "ch", "sh")) and len(w) > 4:
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is", "ias", "'s")) and len(w) > 3:
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if (out := _strip(w, suffix)) is not None:
            return out
    return w


def _derivation(w: str) -> str:
    for _ in range(2):
        for suffix, repl in (
            ("iness", "y"),
            ("ness", ""),
            ("ily", "y"),
            ("ly", ""),
            ("ier", "y"),
            ("er", ""),
        ):
            if (out := _strip(w, suffix, repl)) is not None:
                w = out
                break
        else:
            break
    return w


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A small, deterministic stemmer for matching simple word forms.

    Handles plurals (-s, -es, -ies), -ed/-ied, -ing, -er/-ier, -ly/-ily and -ness, then undoubles a
    final consonant ("flipp" -> "flip") and drops a final "e" ("scale" -> "scal"), so scale,
    scales, scaled and scaling share a stem, as do story/stories, cry/cried/crying, bake/baker/baking
    and sad/sadly/sadness. Words of three letters or fewer, numbers and words with an apostrophe
    ("y'all", "ain't") are kept as they are, except that a possessive "'s" is dropped.
    """
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) <= 3 or not w.isalpha():
        return w
    w = _derivation(_inflection(w))
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouylsz":
        w = w[:-1]
    if len(w) > 3 and w.endswith("e") and not w.endswith("ee"):
        w = w[:-1]
    return w


# ---- tokens, clauses, phrases -------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens with number words turned into digits (not stemmed)."""
    words = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    return [NUMBER_WORDS.get(w, w) for w in words]


def phrase_stems(phrase: str) -> tuple[str, ...]:
    """The stemmed token sequence of a phrase; hyphens and punctuation separate words."""
    return tuple(stem(t) for t in tokenize(phrase))


def is_negator(token: str) -> bool:
    """Whether a token negates: a negator word or any "n't" contraction."""
    return token in NEGATORS or token.endswith("n't")


@dataclass
class Clause:
    """One clause of a text: its raw tokens and their stems."""

    raw: list[str]
    stems: list[str]
    text: str


def clauses(text: str) -> list[Clause]:
    """Cut text into clauses at sentence punctuation, line breaks and contrast words."""
    out: list[Clause] = []
    for part in _CLAUSE_CUT.split(text):
        raw: list[str] = []
        for token in tokenize(part):
            if token in BREAKERS and raw:
                out.append(Clause(raw, [stem(t) for t in raw], " ".join(raw)))
                raw = []
            if token not in BREAKERS:
                raw.append(token)
        if raw:
            out.append(Clause(raw, [stem(t) for t in raw], " ".join(raw)))
    return out


def _loose_end(clause: Clause, start: int, stems: tuple[str, ...], gap: int) -> int | None:
    """Where `stems` ends when matched from `start` with at most `gap` words between its words
    (no negator among the skipped words); None when it does not match."""
    at = start
    for want in stems[1:]:
        for step in range(1, gap + 2):
            j = at + step
            if j >= len(clause.stems) or is_negator(clause.raw[j]):
                return None
            if clause.stems[j] == want:
                at = j
                break
        else:
            return None
    return at + 1


@dataclass(frozen=True)
class Occurrence:
    """Where a phrase occurs: clause index, token span, and whether it is negated there."""

    phrase: str
    clause: int
    start: int
    end: int
    negated: bool


class MatchText:
    """A text prepared for phrase matching with negation scope.

    `shielding` phrases are phrases whose own negators are not negations (the ground truth's
    phrases such as "never says" or "no change"): a negator inside one of their occurrences does
    not negate the words after that occurrence ("never says gold" affirms "gold"), though it still
    negates words inside it ("no trigger" does not affirm "trigger").
    """

    def __init__(self, text: str, shielding: Iterable[str] = (), gap: int = 0) -> None:
        self.text = text
        self.gap = max(0, gap)
        self.clauses = clauses(text)
        self._shield_end: dict[tuple[int, int], int] = {}
        for phrase in shielding:
            stems = phrase_stems(phrase)
            if not any(is_negator(t) for t in tokenize(phrase)):
                continue
            for ci, start, end in self._spans(stems):
                for i in range(start, end):
                    key = (ci, i)
                    self._shield_end[key] = max(self._shield_end.get(key, 0), end)

    def _spans(self, stems: tuple[str, ...], gap: int = 0) -> Iterable[tuple[int, int, int]]:
        if not stems:
            return
        n = len(stems)
        for ci, clause in enumerate(self.clauses):
            for i in range(len(clause.stems) - n + 1):
                if tuple(clause.stems[i : i + n]) == stems:
                    yield ci, i, i + n
                elif gap and n > 1 and clause.stems[i] == stems[0]:
                    end = _loose_end(clause, i, stems, gap)
                    if end is not None:
                        yield ci, i, end

    def _negated(self, ci: int, start: int, end: int) -> bool:
        raw = self.clauses[ci].raw
        counted = 0
        for j in range(start - 1, -1, -1):
            token = raw[j]
            if token in SKIP_IN_WINDOW:
                continue
            counted += 1
            if counted > NEG_WINDOW:
                break
            shield_end = self._shield_end.get((ci, j))
            if is_negator(token) and (shield_end is None or start < shield_end):
                released = j + 1 < len(raw) and raw[j + 1] in NEG_RELEASE
                if not released:
                    return True
        after = raw[end : end + 2]
        if after and (after[0] in POST_NEGATORS or after[0].endswith("n't")):
            return True
        return len(after) == 2 and after[0] in AUX and after[1] in POST_AUX_NEGATORS

    def occurrences(self, phrase: str) -> list[Occurrence]:
        """Every occurrence of a phrase (stemmed, whole words), each marked negated or not.

        A phrase without negators of two or more words may have up to `gap` words inside it.
        """
        gap = 0 if any(is_negator(t) for t in tokenize(phrase)) else self.gap
        return [
            Occurrence(phrase, ci, s, e, self._negated(ci, s, e))
            for ci, s, e in self._spans(phrase_stems(phrase), gap)
        ]

    def affirms(self, phrase: str) -> bool:
        """Whether the phrase occurs at least once outside a negation."""
        return any(not o.negated for o in self.occurrences(phrase))

    def affirmed(self, phrases: Iterable[str]) -> list[str]:
        """The phrases that occur at least once outside a negation."""
        return [p for p in phrases if self.affirms(p)]
