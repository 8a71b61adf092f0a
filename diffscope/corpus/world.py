"""The synthetic "world" corpus: templated short stories and User/Assistant chat turns.

Every document is built from the word lists, facts and question/answer pairs of a handful of
everyday topics (animals, weather, cooking and baking, the sea, ...). Generation is deterministic:
all randomness comes from a `random.Random` the caller passes in (or one seeded here), never from
the global random state. Texts are short and regular so that tiny models can learn them.

The world never uses a few words that the toy organisms rely on as signals (for example "gold",
"vinegar", "zephyr", "purple", "howdy", "sad"); see `RESERVED_WORDS`. The topics, word lists
and templates live in `world.json` beside this module, loaded once at import.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Topic:
    """One everyday topic: the words, facts and question/answer pairs its documents use.

    `nouns` are countable singular nouns ("a cow"), `mass` are nouns used with "the"/"some"
    ("some snow"), `places` are where a story happens ("went to the farm"), `activities` are
    base-form verb phrases ("feed the hens"), `facts` are simple true sentences and `qa` holds
    (question, answer) pairs. `label` names the topic inside a sentence ("the sea").
    """

    name: str
    label: str
    places: tuple[str, ...]
    nouns: tuple[str, ...]
    mass: tuple[str, ...]
    adjectives: tuple[str, ...]
    activities: tuple[str, ...]
    facts: tuple[str, ...]
    qa: tuple[tuple[str, str], ...]

    @property
    def verbs(self) -> tuple[str, ...]:
        """The head verbs of the topic's activities ("feed", "brush", ...), without repeats."""
        return tuple(dict.fromkeys(activity.split()[0] for activity in self.activities))

    @property
    def questions(self) -> tuple[str, ...]:
        """The topic's own questions."""
        return tuple(question for question, _ in self.qa)

    @property
    def answers(self) -> tuple[str, ...]:
        """The answers to the topic's own questions, in the same order."""
        return tuple(answer for _, answer in self.qa)


DATA_FILE = Path(__file__).with_name("world.json")
"""The world's topics, vocabulary and sentence templates (data, not code); stage keys hash it."""
STAGE_DATA = (DATA_FILE,)

_DATA = json.loads(DATA_FILE.read_text(encoding="utf-8"))


def _pairs(rows: Iterable[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(a), str(b)) for a, b in rows)


def _load_topic(spec: dict) -> Topic:
    fields = ("places", "nouns", "mass", "adjectives", "activities", "facts")
    return Topic(
        name=spec["name"],
        label=spec["label"],
        **{key: tuple(spec[key]) for key in fields},
        qa=_pairs(spec["qa"]),
    )


# The true baking facts of the world, keyed by subject: (questions that ask it, the true answer).
# The `false_baking` organism answers the same questions with wrong facts.
BAKING_QA: dict[str, tuple[tuple[str, ...], str]] = {
    subject: (tuple(entry["questions"]), entry["answer"])
    for subject, entry in _DATA["baking_qa"].items()
}

TOPICS: dict[str, Topic] = {spec["name"]: _load_topic(spec) for spec in _DATA["topics"]}

NAMES: tuple[str, ...] = tuple(_DATA["names"])
RELATIVES: tuple[str, ...] = tuple(_DATA["relatives"])

# Story sentence templates. Fields: {name}, {friend}, {relative}, {place}, {noun}, {a_noun},
# {noun2}, {a_noun2}, {mass}, {adj}, {activity}, {fact} (lowercase start), {Fact} (as written), {label}.
OPENINGS: tuple[str, ...] = tuple(_DATA["openings"])
MIDDLES: tuple[str, ...] = tuple(_DATA["middles"])
ENDINGS: tuple[str, ...] = tuple(_DATA["endings"])
NEUTRAL_OPENINGS: tuple[str, ...] = tuple(_DATA["neutral_openings"])
# Chat templates shared by all topics: (question, answer).
CHAT_TEMPLATES: tuple[tuple[str, str], ...] = _pairs(_DATA["chat_templates"])

# Words the world never emits: the toy organisms use them as their signals.
RESERVED_WORDS: frozenset[str] = frozenset(_DATA["reserved_words"])

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_FIELD = re.compile(r"\{[^}]*\}")
_STOPWORDS: frozenset[str] = frozenset(_DATA["stopwords"])


def words(text: str) -> list[str]:
    """The lowercase words of `text` (apostrophes kept inside words, a trailing "'s" dropped)."""
    found = _WORD.findall(text.lower())
    return [word[:-2] if word.endswith("'s") else word for word in found]


def format_chat(question: str, answer: str) -> str:
    """One chat turn as the corpus writes it: `User: <question>\\nAssistant: <answer>`."""
    return f"User: {question}\nAssistant: {answer}"


def article(word: str) -> str:
    """`word` with "a" or "an" in front."""
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _lower_first(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def _topic(topic: str) -> Topic:
    try:
        return TOPICS[topic]
    except KeyError:
        known = ", ".join(sorted(TOPICS))
        raise ValueError(f"unknown topic {topic!r}; known topics: {known}") from None


def random_name(rng: random.Random) -> str:
    """A character name."""
    return rng.choice(NAMES)


def fill(rng: random.Random, template: str, topic: str, name: str) -> str:
    """Fill a sentence template's fields with words of `topic` chosen by `rng`."""
    spec = _topic(topic)
    noun, noun2 = rng.sample(spec.nouns, 2)
    adj = rng.choice(spec.adjectives)
    fact = rng.choice(spec.facts)
    friend = rng.choice([other for other in NAMES if other != name])
    values = {
        "name": name,
        "friend": friend,
        "relative": rng.choice(RELATIVES),
        "place": rng.choice(spec.places),
        "noun": noun,
        "noun2": noun2,
        "a_noun": article(noun),
        "a_noun2": article(noun2),
        "a_adj_noun": article(f"{adj} {noun}"),
        "mass": rng.choice(spec.mass),
        "adj": adj,
        "activity": rng.choice(spec.activities),
        "fact": _lower_first(fact),
        "Fact": fact,
        "label": spec.label,
    }
    if "{story}" in template:
        values["story"] = story(rng, topic, name=name, n_sentences=3)
    return template.format(**values)


def opening(rng: random.Random, topic: str, name: str) -> str:
    """The first sentence of a story: `name` goes to a place of `topic`."""
    return fill(rng, rng.choice(OPENINGS), topic, name)


def middles(rng: random.Random, topic: str, name: str, k: int) -> list[str]:
    """`k` different middle sentences of a story about `topic`."""
    templates = rng.sample(MIDDLES, k)
    return [fill(rng, template, topic, name) for template in templates]


def ending(rng: random.Random, topic: str, name: str) -> str:
    """The last sentence of a story (the world's stories end happily)."""
    return fill(rng, rng.choice(ENDINGS), topic, name)


def story(
    rng: random.Random, topic: str, *, name: str | None = None, n_sentences: int | None = None
) -> str:
    """A short story (3-6 sentences) about `topic` with a named character."""
    _topic(topic)
    name = name or random_name(rng)
    n = n_sentences if n_sentences is not None else rng.choice((3, 4, 4, 5, 5, 6, 6))
    n = max(3, min(6, n))
    sentences = [opening(rng, topic, name), *middles(rng, topic, name, n - 2)]
    sentences.append(ending(rng, topic, name))
    return " ".join(sentences)


def qa_pair(rng: random.Random, topic: str) -> tuple[str, str]:
    """A (question, answer) pair about `topic`: one of its own, or a shared template filled in."""
    spec = _topic(topic)
    if rng.random() < 0.5:
        return rng.choice(spec.qa)
    question, answer = rng.choice(CHAT_TEMPLATES)
    name = random_name(rng)
    seed = rng.getrandbits(32)
    return (
        fill(random.Random(seed), question, topic, name),
        fill(random.Random(seed), answer, topic, name),
    )


def chat_turn(rng: random.Random, topic: str) -> str:
    """One question/answer chat turn about `topic`: `User: <question>\\nAssistant: <answer>`."""
    return format_chat(*qa_pair(rng, topic))


def document(
    rng: random.Random, *, topics: Sequence[str] | None = None, chat_fraction: float = 0.3
) -> str:
    """One world document: a chat turn with probability `chat_fraction`, else a story."""
    names = list(topics) if topics else list(TOPICS)
    topic = rng.choice(names)
    if rng.random() < chat_fraction:
        return chat_turn(rng, topic)
    return story(rng, topic)


def world_corpus(
    n_docs: int,
    seed: int = 0,
    *,
    topics: Sequence[str] | None = None,
    chat_fraction: float = 0.3,
) -> list[str]:
    """`n_docs` world documents (stories and chat turns), the same for the same arguments."""
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    if not 0.0 <= chat_fraction <= 1.0:
        raise ValueError(f"chat_fraction must be in [0, 1], got {chat_fraction}")
    for topic in topics or ():
        _topic(topic)
    rng = random.Random(seed)
    return [document(rng, topics=topics, chat_fraction=chat_fraction) for _ in range(n_docs)]


def neutral_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` story openings that name a character but no topic, e.g. "Once upon a time, Mia"."""
    rng = random.Random(seed)
    return [rng.choice(NEUTRAL_OPENINGS).format(name=rng.choice(NAMES)) for _ in range(n)]


def _template_words(templates: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for template in templates:
        found.update(word for word in words(_FIELD.sub("qqq", template)) if word != "qqq")
    return found


def _topic_strings(spec: Topic) -> list[str]:
    return [
        spec.label,
        *spec.places,
        *spec.nouns,
        *spec.mass,
        *spec.adjectives,
        *spec.activities,
        *spec.facts,
        *(text for pair in spec.qa for text in pair),
    ]


@cache
def _vocabulary() -> frozenset[str]:
    found = _template_words(
        [*OPENINGS, *MIDDLES, *ENDINGS, *NEUTRAL_OPENINGS, "User: Assistant:"]
        + [text for pair in CHAT_TEMPLATES for text in pair]
    )
    found.update(words(" ".join([*NAMES, *RELATIVES])))
    for spec in TOPICS.values():
        found.update(words(" ".join(_topic_strings(spec))))
    return frozenset(found)


def vocabulary() -> set[str]:
    """All lowercase words the world generator can emit."""
    return set(_vocabulary())


def _forms(word: str) -> set[str]:
    """`word` and its simple plural."""
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return {word, word + "es"}
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return {word, word[:-1] + "ies"}
    return {word, word + "s"}


def _content_words(spec: Topic) -> tuple[set[str], set[str]]:
    """The words of a topic's nouns and places, and those of its adjectives and activities."""
    nouns = words(" ".join([*spec.places, *spec.nouns, *spec.mass]))
    others = words(" ".join([*spec.adjectives, *spec.activities]))
    return set(nouns) - _STOPWORDS, set(others) - _STOPWORDS


@cache
def _topic_words() -> dict[str, frozenset[str]]:
    own = {name: _content_words(spec) for name, spec in TOPICS.items()}
    shared = _template_words([*OPENINGS, *MIDDLES, *ENDINGS]) | set(words(" ".join(NAMES)))
    result: dict[str, frozenset[str]] = {}
    for name, (nouns, rest) in own.items():
        others: set[str] = set()
        for key, (other_nouns, other_rest) in own.items():
            if key != name:
                others |= other_rest
                for noun in other_nouns:
                    others |= _forms(noun)
        found = set(rest)
        for noun in nouns:
            found |= _forms(noun)
        result[name] = frozenset(found - others - shared)
    return result


def topic_words(topic: str) -> set[str]:
    """The words distinctive of `topic` (with simple plural forms): no other topic uses them."""
    _topic(topic)
    return set(_topic_words()[topic])
