"""ModelPair: loading full and adapter fine-tunes, architecture/tokenizer checks, fingerprints,
activation capture, left padding and generation on tiny models made in the test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from diffscope.models import ModelPair, PairLoadError, capture, weights_fingerprint
from diffscope.models.hooks import (
    add_to_residual,
    forward_until_neurons,
    neuron_activations_from_mlp_input,
)
from diffscope.organisms.training import train_tokenizer

TEXTS = [
    "the cat sat on the mat and the dog ran to the park",
    "User: what is bread made of?\nAssistant: flour, water, salt and yeast",
    "the sea was calm and the boats came home at night",
] * 10


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    train_tokenizer(TEXTS, 300, folder)
    return folder


def _gpt2(tok_dir: Path, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=2, n_inner=64)
    return GPT2LMHeadModel(cfg).eval()


def _save(model, tok_dir: Path, folder: Path) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pair_dirs(tok_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    base = _save(_gpt2(tok_dir, 0), tok_dir, root / "base")
    ft_model = _gpt2(tok_dir, 0)
    with torch.no_grad():
        ft_model.transformer.h[1].mlp.c_fc.weight[:, 3] *= 4
    ft = _save(ft_model, tok_dir, root / "ft")
    return base, ft


def test_load_full_pair_and_facts(pair_dirs):
    pair = ModelPair.load(str(pair_dirs[0]), str(pair_dirs[1]))
    assert pair.n_layers == 2 and pair.n_neurons == 64 and pair.d_model == 32
    assert pair.family.name == "gpt2"
    assert pair.has_chat_template
    assert pair.check_layer(-1) == 1
    with pytest.raises(ValueError, match="out of range"):
        pair.check_layer(2)


def test_fingerprint_changes_with_weights(pair_dirs):
    pair = ModelPair.load(str(pair_dirs[0]), str(pair_dirs[1]))
    same = ModelPair.load(str(pair_dirs[0]), str(pair_dirs[1]))
    assert pair.fingerprint() == same.fingerprint()
    before = weights_fingerprint(same.finetuned)
    with torch.no_grad():
        same.finetuned.transformer.h[0].mlp.c_proj.bias[0] += 1e-3
    assert weights_fingerprint(same.finetuned) != before


def test_adapter_pair_loads_through_peft(pair_dirs, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = GPT2LMHeadModel.from_pretrained(pair_dirs[0])
    lora = get_peft_model(
        base, LoraConfig(r=4, target_modules=["c_fc"], fan_in_fan_out=True, init_lora_weights=False)
    )
    lora.save_pretrained(tmp_path / "adapter")
    pair = ModelPair.load(str(pair_dirs[0]), adapter=str(tmp_path / "adapter"))
    ids = pair.encode(["the cat sat"])
    assert not torch.allclose(pair.logits("base", ids), pair.logits("finetuned", ids))
    expected = lora.merge_and_unload()(**ids.model_inputs()).logits
    assert torch.allclose(pair.logits("finetuned", ids), expected, atol=1e-5)


def test_bad_inputs_give_clear_errors(pair_dirs, tmp_path, tok_dir):
    with pytest.raises(PairLoadError, match="neither an existing folder nor a hub id"):
        ModelPair.load(str(tmp_path / "missing"), str(pair_dirs[1]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairLoadError, match="no config.json"):
        ModelPair.load(str(tmp_path / "empty"), str(pair_dirs[1]))
    big = GPT2LMHeadModel(
        GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=3, n_head=2, n_inner=64)
    )
    other = _save(big, tok_dir, tmp_path / "other")
    with pytest.raises(PairLoadError, match="num_hidden_layers: base 2 vs fine-tuned 3"):
        ModelPair.load(str(pair_dirs[0]), str(other))
    with pytest.raises(PairLoadError, match="exactly one"):
        ModelPair.load(str(pair_dirs[0]))


def test_tokenizer_mismatch_is_named(pair_dirs, tmp_path):
    folder = tmp_path / "tok2"
    train_tokenizer(["completely different words here " * 5, "zebra quantum"], 280, folder)
    model = GPT2LMHeadModel.from_pretrained(pair_dirs[1])
    model.save_pretrained(folder)
    with pytest.raises(PairLoadError, match="tokenizers differ"):
        ModelPair.load(str(pair_dirs[0]), str(folder))


def test_captured_activations_equal_plain_forward(pair_dirs):
    pair = ModelPair.load(str(pair_dirs[0]), str(pair_dirs[1]))
    batch = pair.encode(["the cat sat on the mat", "the sea"])
    model = pair.base
    with capture(model, pair.family, neurons=[0, 1], resid=[0, 1], mlp_in=[1]) as got:
        logits = model(**batch.model_inputs()).logits
    # recompute by hand from the hidden states of a plain forward
    out = model(**batch.model_inputs(), output_hidden_states=True)
    assert torch.allclose(out.logits, logits)
    # hidden_states[1] is the residual after block 0 (the last entry has ln_f applied)
    assert torch.allclose(got.resid[0], out.hidden_states[1], atol=1e-5)
    assert torch.allclose(model.transformer.ln_f(got.resid[1]), out.hidden_states[2], atol=1e-5)
    block = model.transformer.h[1]
    manual = block.mlp.act(block.mlp.c_fc(block.ln_2(got.mlp_in[1])))
    assert torch.allclose(got.neurons[1], manual, atol=1e-6)
    again = neuron_activations_from_mlp_input(model, pair.family, 1, got.mlp_in[1])
    assert torch.allclose(again, got.neurons[1], atol=1e-6)
    # a forward stopped at layer 1's neurons captures the same values and returns nothing
    with capture(model, pair.family, neurons=[0, 1]) as early:
        assert forward_until_neurons(model, pair.family, 1, batch.model_inputs()) is None
    assert torch.equal(early.neurons[0], got.neurons[0])
    assert torch.equal(early.neurons[1], got.neurons[1])


def test_llama_family_neurons_are_down_proj_inputs():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg).eval()
    from diffscope.models import family_for

    family = family_for(model)
    ids = torch.randint(0, 64, (2, 7))
    with capture(model, family, neurons=[1], mlp_in=[1]) as got:
        model(input_ids=ids)
    mlp = model.model.layers[1].mlp
    x = model.model.layers[1].post_attention_layernorm(got.mlp_in[1])
    manual = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
    assert got.neurons[1].shape == (2, 7, 48)
    assert torch.allclose(got.neurons[1], manual, atol=1e-6)
    again = neuron_activations_from_mlp_input(model, family, 1, got.mlp_in[1])
    assert torch.allclose(again, got.neurons[1], atol=1e-6)
    with capture(model, family, neurons=[1]) as early:
        forward_until_neurons(model, family, 1, {"input_ids": ids})
    assert torch.equal(early.neurons[1], got.neurons[1])


def test_left_padding_matches_unpadded(pair_dirs):
    pair = ModelPair.load(str(pair_dirs[0]), str(pair_dirs[1]))
    short, long = "the cat", "the cat sat on the mat and the dog ran"
    batch = pair.encode([short, long])
    assert batch.attention_mask[0, 0] == 0 and batch.position_ids[0, -1] < batch.position_ids[1, -1]
    padded = pair.logits("finetuned", batch)[0, -1]
    alone = pair.logits("finetuned", pair.encode([short]))[0, -1]
    assert torch.allclose(padded, alone, atol=1e-4)
    together = pair.generate("base", [short, long], max_new_tokens=6)
    assert together[0] == pair.generate("base", [short], max_new_tokens=6)[0]


def test_prompt_longer_than_context_is_refused(pair_dirs):
    pair = ModelPair.load(str(pair_dirs[0]), str(pair_dirs[1]))
    with pytest.raises(ValueError, match="over the limit of 64"):
        pair.encode(["the cat sat " * 40])


def test_steering_hook_changes_output(pair_dirs):
    pair = ModelPair.load(str(pair_dirs[0]), str(pair_dirs[1]))
    batch = pair.encode(["the cat sat"])
    plain = pair.logits("base", batch)
    with add_to_residual(pair.base, pair.family, 0, torch.ones(32) * 5):
        steered = pair.logits("base", batch)
    assert not torch.allclose(plain, steered)
    assert torch.allclose(pair.logits("base", batch), plain)
