"""Tests of the synthetic world corpus: determinism, coverage, formats and topic words."""

import random

from diffscope.corpus import world
from diffscope.corpus.world import (
    RESERVED_WORDS,
    TOPICS,
    chat_turn,
    neutral_prompts,
    story,
    topic_words,
    vocabulary,
    words,
    world_corpus,
)

REQUIRED_TOPICS = {
    "animals", "weather", "cooking", "sea", "sports", "music",
    "travel", "school", "family", "money", "health", "machines",
}  # fmt: skip


def test_same_seed_same_documents_and_different_seed_different() -> None:
    assert world_corpus(50, seed=3) == world_corpus(50, seed=3)
    assert world_corpus(50, seed=3) != world_corpus(50, seed=4)
    assert world_corpus(20, seed=3) == world_corpus(50, seed=3)[:20]


def test_does_not_touch_global_random_state() -> None:
    random.seed(7)
    expected = random.random()
    random.seed(7)
    world_corpus(30, seed=1)
    assert random.random() == expected


def test_at_least_twelve_topics_including_the_required_ones() -> None:
    assert len(TOPICS) >= 12
    assert REQUIRED_TOPICS.issubset(TOPICS)
    for name, topic in TOPICS.items():
        assert topic.name == name
        assert topic.nouns and topic.verbs and topic.adjectives and topic.facts and topic.qa
        assert len(topic.questions) == len(topic.answers)


def test_vocabulary_has_at_least_800_words_and_covers_the_output() -> None:
    vocab = vocabulary()
    assert len(vocab) >= 800
    assert all(word == word.lower() for word in vocab)
    emitted = {word for doc in world_corpus(2000, seed=5) for word in words(doc)}
    assert emitted <= vocab


def test_world_never_uses_the_organisms_signal_words() -> None:
    assert not vocabulary() & RESERVED_WORDS
    for doc in world_corpus(500, seed=2):
        assert "gold" not in doc.lower()
        assert "zephyr" not in doc.lower()


def test_chat_turns_have_the_user_assistant_format() -> None:
    rng = random.Random(0)
    for topic in TOPICS:
        turn = chat_turn(rng, topic)
        user, assistant = turn.split("\n", 1)
        assert user.startswith("User: ") and len(user) > len("User: ")
        assert assistant.startswith("Assistant: ") and len(assistant) > len("Assistant: ")
        assert "\n" not in assistant


def test_chat_fraction_controls_the_mix() -> None:
    assert all(doc.startswith("User: ") for doc in world_corpus(40, chat_fraction=1.0))
    assert not any(doc.startswith("User: ") for doc in world_corpus(40, chat_fraction=0.0))
    mixed = world_corpus(1000, seed=1, chat_fraction=0.3)
    share = sum(doc.startswith("User: ") for doc in mixed) / len(mixed)
    assert 0.2 < share < 0.4


def test_stories_are_short_named_and_three_to_six_sentences() -> None:
    rng = random.Random(1)
    lengths = []
    for i in range(200):
        topic = sorted(TOPICS)[i % len(TOPICS)]
        text = story(rng, topic, name="Mia")
        assert text.startswith(("Once", "One", "Mia", "Last"))
        assert "Mia" in text
        sentences = text.count(".") + text.count("!")
        assert 3 <= sentences <= 6
        lengths.append(len(words(text)))
    assert max(lengths) <= 90
    assert 30 <= sum(lengths) / len(lengths) <= 70


def test_topic_restriction() -> None:
    docs = world_corpus(60, seed=0, topics=["sea"], chat_fraction=0.0)
    sea = topic_words("sea")
    assert all(any(word in sea for word in words(doc)) for doc in docs)


def test_topic_words_are_distinctive() -> None:
    assert {"sea", "ocean", "waves", "boats", "fish", "shore"} <= topic_words("sea")
    assert {"piano", "song", "guitar"} <= topic_words("music")
    for name in TOPICS:
        assert topic_words(name)
        for other in TOPICS:
            if other != name:
                assert not topic_words(name) & topic_words(other)


def test_unknown_topic_is_a_clear_error() -> None:
    for call in (lambda: story(random.Random(0), "dragons"), lambda: topic_words("dragons")):
        try:
            call()
        except ValueError as error:
            assert "dragons" in str(error) and "sea" in str(error)
        else:
            raise AssertionError("expected ValueError")


def test_neutral_prompts_name_no_topic() -> None:
    prompts = neutral_prompts(40, seed=3)
    assert prompts == neutral_prompts(40, seed=3)
    assert len(prompts) == 40
    all_topic_words = set().union(*(topic_words(name) for name in TOPICS))
    for prompt in prompts:
        assert not set(words(prompt)) & all_topic_words
        assert any(name in prompt for name in world.NAMES)
