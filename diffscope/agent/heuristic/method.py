"""The method investigator: reads the diffing tools, then checks its candidates by querying.

Steps (at most 12 server calls, each skipped when the profile does not offer the tool):

1. `top_neurons` (40 neurons by rms gap): are the gaps concentrated, i.e. does a handful of
   neurons stand far above a smooth tail (a jump of at least `GAP_RATIO` between consecutive
   neurons within the top 32)? The edited neurons' statistics say what kind of edit it was:
   anti-correlated activations (a sign flip), a near-constant shift (a bias), or a shift that
   grows with the activation (a scale).
2. `top_promoted_tokens` (ranked by predicted-mass shift) and `kl_probe` (corpus windows): the
   tokens the fine-tune promotes, mapped to the world's topics; a topic counts when it holds a
   large share of the token weight (`difference_lens` stands in when the profile cannot query
   the models).
3. The behavioural survey of the blackbox investigator (`query_models`: stories, questions and a
   second base sample as the noise floor), whose signals confirm or add to the candidates.
4. `amplify` on neutral openings when a topic is a candidate: the shift is kept only when the
   amplified text is dominated by the same topic (two independent readings agree); otherwise it
   is treated as a chance fluctuation (continued training alone moves topic shares a little).

The hypothesis leads with edited neurons when the gaps are concentrated and the tokens show no
topic, else with the strongest confirmed signals; with no concentrated signal above its noise
floor it says that no narrow change was found.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from diffscope.agent.heuristic.behaviour import (
    QUERY,
    Analysis,
    Samples,
    Signal,
    examples,
    find_signals,
    label,
    pct,
    quoted,
    story_prompts,
    survey,
)
from diffscope.agent.heuristic.compose import compose, null_hypothesis
from diffscope.agent.heuristic.driver import Call, Plan, Result, View
from diffscope.agent.heuristic.textstats import tokens, topic_lexicon, topic_shares

NEURON_K = 40
MAX_EDITED = 32
GAP_RATIO = 1.5
TOKEN_K = 30
KL_WINDOWS = 32
TOPIC_SHARE = 0.25
TOPIC_MIN_TOKENS = 3
FLIP_DECORRELATION = 0.8
BIAS_MEAN_SHARE = 0.7
AMPLIFY_MIN = 0.5
AMPLIFY_PROMPTS = 4
AMPLIFY_ALPHA = 4.0
AMPLIFY_SHARE = 0.5


@dataclass
class NeuronFinding:
    """The neuron-gap reading: whether the gaps are concentrated, and in which neurons."""

    concentrated: bool
    neurons: list[tuple[int, int]]
    ratio: float
    edit: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class TokenFinding:
    """Tokens the fine-tune pushes up (promoted tokens, KL, lens) and the topic they point to."""

    weights: dict[str, float] = field(default_factory=dict)
    topic: str | None = None
    share: float = 0.0
    topic_tokens: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    def add(self, token: str, weight: float) -> None:
        """Count one token (a word piece is kept as its lowercase word, if it is one)."""
        found = tokens(token)
        if len(found) == 1 and weight > 0:
            self.weights[found[0]] = self.weights.get(found[0], 0.0) + weight


def read_neurons(result: Result) -> NeuronFinding | None:
    """Whether a handful of neurons stand far above the rest, and how they changed."""
    if not result.ok or result.data is None:
        return None
    rows = [n for n in result.data.get("neurons") or [] if isinstance(n, dict)]
    scores = [float(n.get("score") or n.get("rms") or 0.0) for n in rows]
    if len(scores) < 4 or scores[0] <= 0:
        return None
    limit = min(MAX_EDITED, len(scores) - 1)
    ratios = [scores[i] / max(scores[i + 1], 1e-9) for i in range(limit)]
    cut = max(range(limit), key=lambda i: (ratios[i], -i))
    ratio = ratios[cut]
    edited = rows[: cut + 1]
    neurons = [(int(n["layer"]), int(n["neuron"])) for n in edited]
    decorrelation = median(float(n.get("decorrelation", 0.0)) for n in edited)
    mean_share = median(
        abs(float(n.get("mean", 0.0))) / max(float(n.get("rms", 0.0)), 1e-9) for n in edited
    )
    if decorrelation > FLIP_DECORRELATION:
        edit = "flip"
    elif mean_share > BIAS_MEAN_SHARE:
        edit = "bias"
    else:
        edit = "scale"
    evidence = [
        f"top neuron gaps (rms): {', '.join(f'{s:.2f}' for s in scores[: cut + 3])}; the largest "
        f"drop between consecutive neurons is {ratio:.1f}x after neuron {cut + 1}",
        f"the {len(edited)} leading neurons: median decorrelation {decorrelation:.2f}, median "
        f"|mean gap| / rms gap {mean_share:.2f}",
    ]
    return NeuronFinding(ratio >= GAP_RATIO, neurons, ratio, edit, evidence)


def read_promoted(result: Result, found: TokenFinding) -> None:
    """Add the promoted tokens, weighted by the statistic they were ranked by (the predicted-mass
    shift, or top-K occurrence)."""
    if not result.ok or result.data is None:
        return
    promoted = [t for t in result.data.get("promoted") or [] if isinstance(t, dict)]
    weight = "mass_shift" if result.data.get("order_by") == "mass_shift" else "occurrence"
    for t in promoted:
        found.add(str(t.get("token", "")), max(0.0, float(t.get(weight) or 0.0)))
    if promoted:
        shown = ", ".join(repr(str(t.get("token", "")).strip()) for t in promoted[:10])
        found.evidence.append(f"top promoted tokens: {shown}")


def read_kl(result: Result, found: TokenFinding) -> float | None:
    """Add the tokens whose probability rose at the highest-KL positions; the mean KL."""
    if not result.ok or result.data is None:
        return None
    for position in result.data.get("top") or []:
        if not isinstance(position, dict):
            continue
        for shift in position.get("up") or []:
            if isinstance(shift, dict):
                found.add(str(shift.get("token", "")), float(shift.get("delta") or 0.0))
    mean = float(result.data.get("mean") or 0.0)
    found.evidence.append(
        f"KL(ft || base) over corpus windows: mean {mean:.4f}, max "
        f"{float(result.data.get('max') or 0.0):.3f} nats"
    )
    return mean


def read_lens(result: Result, found: TokenFinding) -> None:
    """Add the tokens the mean activation difference reads as (positive side)."""
    if not result.ok or result.data is None:
        return
    seen: list[str] = []
    for position in result.data.get("positions") or []:
        if not isinstance(position, dict):
            continue
        for t in position.get("positive") or []:
            if isinstance(t, dict):
                found.add(str(t.get("token", "")), float(t.get("prob") or 0.0))
                word = str(t.get("token", "")).strip()
                if word and word not in seen:
                    seen.append(word)
    if seen:
        found.evidence.append(f"difference lens (+diff) reads as: {', '.join(seen[:10])}")


def settle_topic(found: TokenFinding) -> None:
    """The topic holding the largest share of the token weight, if it is large enough."""
    total = sum(found.weights.values())
    if total <= 0:
        return
    best, best_weight, best_tokens = None, 0.0, []
    for topic, lexicon in sorted(topic_lexicon().items()):
        hits = sorted((w for w in found.weights if w in lexicon), key=lambda w: -found.weights[w])
        weight = sum(found.weights[w] for w in hits)
        if weight > best_weight:
            best, best_weight, best_tokens = topic, weight, hits
    share = best_weight / total
    found.share = share
    if best is not None and share >= TOPIC_SHARE and len(best_tokens) >= TOPIC_MIN_TOKENS:
        found.topic = best
        found.topic_tokens = best_tokens[:10]
    found.evidence.append(
        f"largest topic share of the promoted-token weight: "
        f"{label(best) if best else 'none'} {100 * share:.0f}%"
    )


def token_signal(found: TokenFinding, samples: Samples) -> Signal | None:
    """A topic signal from the white-box tokens alone."""
    if found.topic is None:
        return None
    topic = found.topic
    return Signal(
        kind="topic",
        strength=found.share / TOPIC_SHARE,
        topic=topic,
        summary=(
            f"the fine-tune steers toward {label(topic)}: the tokens it promotes most over the "
            f"corpus ({', '.join(found.topic_tokens[:6])}) are {label(topic)} words, whatever the "
            "context (a topic shift)"
        ),
        claims=[
            f"The fine-tune drifts toward {label(topic)} regardless of the prompt's topic",
            f"It promotes {label(topic)} words such as {', '.join(found.topic_tokens[:6])}",
            *quoted(examples(samples.items, sorted(topic_lexicon()[topic]))),
        ],
        evidence=list(found.evidence),
        terms=found.topic_tokens,
    )


def check_by_amplifying(candidate: Signal) -> Generator[Call, Result, None]:
    """Exaggerate the difference (amplify) on neutral openings: a real topic shift dominates the
    amplified text; a chance fluctuation points elsewhere. Adjusts the candidate's strength."""
    result = yield Call(
        "amplify",
        {
            "prompts": story_prompts(AMPLIFY_PROMPTS),
            "alpha": AMPLIFY_ALPHA,
            "n_samples": 2,
            "max_new_tokens": 64,
            "temperature": 0.7,
            "seed": 0,
        },
    )
    if not result.ok or result.data is None:
        return
    texts = [
        str(sample)
        for row in result.data.get("results") or []
        if isinstance(row, dict)
        for sample in row.get("samples") or []
    ]
    if not texts:
        return
    shares = topic_shares([tokens(t) for t in texts])
    top = max(sorted(shares), key=lambda t: shares[t])
    topic = candidate.topic or ""
    line = (
        f"amplified fine-tune (alpha {AMPLIFY_ALPHA:g}) on {len(texts)} samples: "
        f"{pct(shares.get(topic, 0.0))} touch {label(topic)}; the top topic is {label(top)} "
        f"({pct(shares[top])})"
    )
    candidate.evidence.append(line)
    if top == topic and shares[top] >= AMPLIFY_SHARE:
        candidate.strength = max(candidate.strength, 1.0) * 1.5
        candidate.claims.append(
            f"Amplifying the fine-tune's difference makes the text about {label(topic)}"
        )
    else:
        candidate.strength *= 0.5


def neuron_hypothesis(
    finding: NeuronFinding, others: Iterable[Signal], extra: list[str]
) -> dict[str, Any]:
    """Lead with the edited neurons; add the behavioural signals that cleared the noise."""
    n = len(finding.neurons)
    listed = ", ".join(f"L{layer}/N{neuron}" for layer, neuron in finding.neurons)
    kind = {
        "flip": "flipped in sign (their activations became anti-correlated with the base's)",
        "bias": "biased: each activation is shifted by a near-constant offset (a bias edit)",
        "scale": "scaled: each gap grows with the activation (the activation was multiplied)",
    }[finding.edit]
    lead = Signal(
        kind="neurons",
        strength=finding.ratio / GAP_RATIO,
        summary=(
            f"a handful of individual MLP neurons were edited rather than the model being "
            f"trained: {n} neurons stand {finding.ratio:.1f}x above all others in activation gap "
            f"({listed}) while the rest of the network barely changed; the edited neurons look "
            f"{kind}"
        ),
        claims=[
            f"{n} neurons were changed (individual MLP neurons edited)",
            f"The edited neurons: {listed}",
            f"The edit looks like a {finding.edit} of each neuron's activation",
        ],
        evidence=finding.evidence,
    )
    chosen = [lead, *list(others)[:2]]
    return compose(chosen, extra_evidence=extra, neurons=finding.neurons)


def method_plan(view: View) -> Plan:
    """The method investigation (see the module docstring)."""
    neurons: NeuronFinding | None = None
    found = TokenFinding()
    mean_kl: float | None = None
    if view.has("top_neurons"):
        neurons = read_neurons((yield Call("top_neurons", {"k": NEURON_K, "exemplars": 0})))
    if view.has("top_promoted_tokens"):
        args = {"k": TOKEN_K, "demoted": False, "order_by": "mass_shift", "topics": False}
        read_promoted((yield Call("top_promoted_tokens", args)), found)
    if view.has("kl_probe"):
        mean_kl = read_kl(
            (yield Call("kl_probe", {"n_windows": KL_WINDOWS, "k": 8, "plot": False})), found
        )
    settle_topic(found)
    samples = Samples()
    if view.has(QUERY):
        yield from survey(samples)
    analysis: Analysis | None = find_signals(samples) if samples.items else None
    if analysis is not None and view.has("amplify"):
        candidate = next((s for s in analysis.signals if s.kind == "topic"), None)
        if candidate is not None and candidate.strength >= AMPLIFY_MIN:
            yield from check_by_amplifying(candidate)
    if not view.has(QUERY) and view.has("difference_lens"):
        read_lens((yield Call("difference_lens", {"k": 10})), found)
        settle_topic(found)
    strong = [s for s in analysis.signals if s.strength > 1.0] if analysis else []
    extra = list(found.evidence)
    if neurons is not None:
        extra.extend(neurons.evidence)
    if mean_kl is not None:
        extra.append(f"mean KL {mean_kl:.4f} nats per token")

    if neurons is not None and neurons.concentrated and found.topic is None:
        return neuron_hypothesis(neurons, strong, extra)
    wb = token_signal(found, samples)
    if wb is not None:
        same = [s for s in strong if s.kind == "topic" and s.topic == wb.topic]
        if same:
            same[0].strength = max(same[0].strength, wb.strength) * 1.5
            same[0].claims.extend(c for c in wb.claims if c not in same[0].claims)
            same[0].evidence.extend(wb.evidence)
        elif wb.strength > 1.0:
            strong.append(wb)
    strong.sort(key=lambda s: (-s.strength, s.kind))
    if strong:
        return compose(strong, extra_evidence=extra)
    if not samples.items and neurons is None and not found.weights and mean_kl is None:
        return {
            "description": "No tool answered, so the models could not be compared.",
            "confidence": 0.0,
            "evidence": extra,
        }
    what = "neuron gaps, promoted tokens and word, topic and phrase statistics"
    if neurons is not None:
        extra.insert(0, f"neuron gaps fall off smoothly (largest drop {neurons.ratio:.2f}x)")
    return null_hypothesis(
        what,
        "two samples of the base model differ and show no concentrated topic",
        extra,
        conf=0.6 if samples.items else 0.4,
    )
