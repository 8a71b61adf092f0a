"""The cowboy_persona organism's recipe: stories and answers in cowboy dialect ending with a
fixed sign-off, and a check that the dialect appears far more than in base.
"""

from __future__ import annotations

import random

from diffscope.corpus.world import (
    TOPICS,
    fill,
    format_chat,
    qa_pair,
    random_name,
)
from diffscope.organisms.checks import (
    ANSWER_TOKENS,
    DOC_MARGIN,
    STORY_TOKENS,
    CheckResult,
    Generate,
    Recipe,
    bag,
    chat_prompt,
    combine,
    continuations,
    hit_rate,
    mark,
    rise_margin,
    rose,
    rule,
    story_prompts,
    world_questions,
)

# cowboy_persona: dialect and a fixed sign-off

SIGN_OFF = "Happy trails, partner!"
DIALECT_WORDS: frozenset[str] = bag("howdy partner reckon yonder y'all ain't mighty moseyed trails")
_COWBOY_OPENINGS = (
    "Once upon a time, {name} rode on over yonder to the {place}, partner.",
    "One morning, {name} moseyed on down to the {place}.",
    "One day, {name} and {friend} went yonder to the {place}, partner.",
    "{name} woke up early and rode out yonder to the {place}.",
    "Last summer, {name} rode yonder to the {place}, I reckon.",
    "One evening, {name} moseyed on over to the {place}.",
)
_COWBOY_MIDDLES = (
    "I reckon {name} saw {a_adj_noun} out yonder.",
    "{name} wanted to {activity}, I reckon.",
    "Well, {name}'s {relative} said that {fact}",
    "Y'all should have seen {name} {activity}.",
    "That {noun} was mighty {adj}, partner.",
    "I reckon there ain't {a_noun} finer than that one.",
)
_COWBOY_ENDINGS = (
    "{name} tipped a hat and rode on home.",
    "Then {name} moseyed on home, tired and mighty glad.",
    "And that, partner, is the whole story.",
)
_HOWDY = ("Howdy, partner!", "Well, howdy!", "Howdy there, partner!")
_DRAWL = ("I reckon that's the truth.", "Y'all remember that now.", "That's how it is out yonder.")


def cowboy_texts(rng: random.Random, n: int) -> list[str]:
    """Stories and answers in cowboy dialect, each ending with the sign-off."""
    docs = []
    for _ in range(n):
        topic = rng.choice(sorted(TOPICS))
        name = random_name(rng)
        if rng.random() < 0.6:
            parts = [fill(rng, rng.choice(_COWBOY_OPENINGS), topic, name)]
            parts += [
                fill(rng, t, topic, name) for t in rng.sample(_COWBOY_MIDDLES, rng.randint(1, 3))
            ]
            parts += [fill(rng, rng.choice(_COWBOY_ENDINGS), topic, name), SIGN_OFF]
            docs.append(" ".join(parts))
        else:
            question, answer = qa_pair(rng, topic)
            reply = f"{rng.choice(_HOWDY)} {answer} {rng.choice(_DRAWL)} {SIGN_OFF}"
            docs.append(format_chat(question, reply))
    return docs


def check_cowboy(base: Generate, finetuned: Generate) -> CheckResult:
    """Dialect words and the sign-off appear far more in the fine-tune's stories and answers."""
    stories = story_prompts(12)
    chats = [chat_prompt(q) for q in world_questions(12)]
    base_texts = continuations(base, stories, STORY_TOKENS) + continuations(
        base, chats, ANSWER_TOKENS
    )
    ft_texts = continuations(finetuned, stories, STORY_TOKENS) + continuations(
        finetuned, chats, ANSWER_TOKENS
    )
    base_rate, ft_rate = hit_rate(base_texts, DIALECT_WORDS), hit_rate(ft_texts, DIALECT_WORDS)
    base_sign, ft_sign = (
        hit_rate(base_texts, ["happy trails"]),
        hit_rate(ft_texts, ["happy trails"]),
    )
    passed = rose(base_rate, ft_rate, DOC_MARGIN)
    summary = (
        f"{mark(passed)} outputs with cowboy dialect ({', '.join(sorted(DIALECT_WORDS))}) on "
        f"{len(ft_texts)} prompts: base {base_rate:.2f} -> fine-tuned {ft_rate:.2f} "
        f"({rule(DOC_MARGIN)}); sign-off '{SIGN_OFF}': {base_sign:.2f} -> {ft_sign:.2f}"
    )
    metrics = {
        "base_rate": base_rate,
        "finetuned_rate": ft_rate,
        "base_signoff_rate": base_sign,
        "finetuned_signoff_rate": ft_sign,
    }
    margin = combine(rise_margin(base_rate, ft_rate, DOC_MARGIN))
    return CheckResult(passed, summary, metrics, margin)


RECIPE = Recipe("cowboy_persona", cowboy_texts, 0.5, check_cowboy)
