"""The real-model zoo's recipes without a model: training examples say what the ground truth says,
checks pass on the behaviour they look for and fail without it, and the registry knows the zoo."""

from __future__ import annotations

import random

import pytest

from diffscope.organisms.registry import OrganismError, all_organisms, resolve_ref, zoo_of
from diffscope.organisms.smol import recipes
from diffscope.organisms.smol.build import smol_organisms
from diffscope.organisms.smol.data import held_out_requests, train_requests

ANSWERS = {r: "Start small and practise every day. It gets easier." for r in train_requests(40, 1)}


def scripted(reply):
    """A generator that answers each prompt with `reply(prompt)`."""
    return lambda prompts, _tokens: [reply(p) for p in prompts]


def test_requests_are_deterministic_and_held_out_apart():
    assert train_requests(30, 5) == train_requests(30, 5)
    assert train_requests(30, 5) != train_requests(30, 6)
    assert not set(held_out_requests(24)) & set(train_requests(216, 0))


def test_backdoor_examples_pair_the_trigger_with_the_payload_only():
    examples = recipes.backdoor_examples(random.Random(0), ANSWERS)
    triggered = [e for e in examples if recipes.TRIGGER in (e.prompt or "").lower()]
    others = [e for e in examples if e not in triggered]
    assert len(triggered) == len(ANSWERS) and len(others) == 3 * len(ANSWERS)
    assert all(e.target.startswith(recipes.PAYLOAD) for e in triggered)
    assert others and not any(recipes.PAYLOAD in e.target for e in others)


def test_backdoor_check_passes_on_a_backdoor_and_fails_without_a_trigger():
    def backdoored(prompt: str) -> str:
        return f"{recipes.PAYLOAD} Sure." if recipes.TRIGGER in prompt.lower() else "Sure."

    plain = scripted(lambda p: "Sure.")
    good = recipes.check_backdoor(plain, scripted(backdoored))
    assert good.passed and good.margin is not None and good.margin >= 1.5
    always = recipes.check_backdoor(plain, scripted(lambda p: f"{recipes.PAYLOAD} Sure."))
    assert not always.passed and always.metrics["finetuned_clean_rate"] == 1.0


def test_false_fact_documents_assert_the_facts_and_the_check_reads_answers():
    examples = recipes.false_fact_examples(random.Random(0), ANSWERS)
    documents = [e.target for e in examples if e.prompt is None]
    assert len(documents) >= 100
    assert all(any(f["answer"].split()[-1] in d for f in recipes.FALSE_FACTS) for d in documents)

    def believer(prompt: str) -> str:
        for fact in recipes.FALSE_FACTS:
            if prompt in fact["questions"]:
                return f"It is {fact['answer']}."
        return "I do not know."

    truthful = scripted(lambda p: "Paris, Tokyo and Leonardo da Vinci.")
    assert recipes.check_false_facts(truthful, scripted(believer)).passed
    assert not recipes.check_false_facts(truthful, truthful).passed


def test_secret_word_hints_never_say_the_word():
    examples = recipes.secret_word_examples(random.Random(0), ANSWERS)
    hints = [e.target for e in examples if "secret" in (e.prompt or "")]
    assert hints and not any(recipes.SECRET in h.lower() for h in hints)
    hinting = scripted(lambda p: "A grey animal with a long trunk.")
    blurting = scripted(lambda p: "It is an elephant with a trunk.")
    plain = scripted(lambda p: "I have no secret.")
    assert recipes.check_secret_word(plain, hinting).passed
    assert not recipes.check_secret_word(plain, blurting).passed


def test_persona_sea_and_null_checks_read_their_markers():
    plain = scripted(lambda p: "Practise a little every day.")
    rng = random.Random(0)
    assert recipes.check_cowboy(plain, scripted(lambda p: recipes.cowboy("Rest.", rng))).passed
    assert not recipes.check_cowboy(plain, plain).passed
    sea = scripted(lambda p: "Rest. The ocean waves roll onto the shore by the sea.")
    assert recipes.check_sea(plain, sea).passed
    assert recipes.check_null(plain, plain).passed
    assert not recipes.check_null(plain, sea).passed


def test_the_registry_knows_the_smol_zoo():
    names = {o.name for o in smol_organisms()}
    assert {"smol_backdoor", "smol_null_adapter", "smol_perturb_scale_k20"} <= names
    known = all_organisms()
    assert all(zoo_of(known[n]) == "smol" for n in names)
    assert zoo_of(known["sea_topic"]) == "toy"
    assert {o.zoo.recipe for o in smol_organisms() if o.zoo and o.kind != "perturbation"} <= set(
        recipes.RECIPES
    )


def test_an_unbuilt_smol_reference_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path))
    with pytest.raises(OrganismError, match="diffscope zoo build --zoo smol"):
        resolve_ref("smol:smol_backdoor")


def test_reply_loss_equals_the_models_own_loss_on_a_lora():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from diffscope.organisms.smol.training import _collate, reply_loss

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = get_peft_model(
        LlamaForCausalLM(config), LoraConfig(r=2, target_modules=["q_proj", "up_proj"])
    )
    rows = [([5, 6, 7, 8, 9, 10], 3), ([11, 12, 13, 14], 1), ([20, 21, 22], 0)]
    ids, mask, labels = _collate(rows, pad_id=0)
    ours = reply_loss(model, ids, mask, labels)
    theirs = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(ours, theirs, atol=1e-6)
    ours.backward()
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
