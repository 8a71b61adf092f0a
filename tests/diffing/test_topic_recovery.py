"""Topic recovery by logit-diff mining on the micro zoo: the sea organism's top promoted tokens hold a
sea word, while the null control's top promoted tokens do not concentrate on any world topic.
(Per-organism rates on the small zoo come from benchmarks/rediscovery.py.)"""

from __future__ import annotations

import pytest

from diffscope.corpus import TOPICS, topic_words
from diffscope.diffing.artifacts import Artifacts
from diffscope.organisms.registry import get_organism, load_pair


def promoted(name: str, k: int = 20) -> list[str]:
    pair = load_pair(get_organism(name), size="micro")
    return [t.token.strip().lower() for t in Artifacts(pair).diff_mining().promoted[:k]]


def topic_share(tokens: list[str]) -> dict[str, float]:
    return {name: sum(t in topic_words(name) for t in tokens) / len(tokens) for name in TOPICS}


@pytest.fixture(scope="module")
def tokens(micro_zoo) -> dict[str, list[str]]:
    return {name: promoted(name) for name in ("sea_topic", "null_control")}


def test_sea_organism_promotes_sea_words(tokens):
    sea = topic_words("sea") | {"sea", "ocean", "waves", "boat", "boats", "shore", "fish"}
    assert any(t in sea for t in tokens["sea_topic"]), tokens["sea_topic"]
    shares = topic_share(tokens["sea_topic"])
    assert max(shares, key=shares.get) == "sea"


def test_null_control_promotes_no_topic(tokens):
    shares = topic_share(tokens["null_control"])
    assert max(shares.values()) <= 0.1, shares
