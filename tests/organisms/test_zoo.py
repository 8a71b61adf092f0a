"""The offline toy zoo: every organism's behavioural check passes on the micro zoo (by a margin), its
last check can be read back, a second build reuses the cache, stages are keyed by their recipe, and
the registry reports bad input clearly."""

from __future__ import annotations

import json
import time

import pytest

from diffscope.organisms.checks import TARGET_MARGIN
from diffscope.organisms.registry import (
    OrganismError,
    all_organisms,
    get_organism,
    load_pair,
    resolve_ref,
    with_built_ground_truth,
)
from diffscope.organisms.zoo import build_zoo, check_result, toy_organisms


def test_every_behavioural_check_passes(micro_zoo):
    built = {o.name for o in toy_organisms()} | {"base"}
    assert built <= set(micro_zoo)
    failed = {name: r.summary for name, r in micro_zoo.items() if not r.passed}
    assert not failed, failed


def test_every_check_passes_with_a_margin(micro_zoo):
    weak = {
        name: r.margin
        for name, r in micro_zoo.items()
        if name != "base" and (r.margin is None or r.margin < TARGET_MARGIN)
    }
    assert not weak, weak
    assert micro_zoo["base"].margin is None


def test_check_result_reads_the_last_check_back(micro_zoo):
    for name in ("sad_stories", "perturb_flip_k5", "null_adapter"):
        result = check_result(name, "micro")
        assert result is not None
        built = micro_zoo[name]
        assert (result.passed, result.margin, result.figures) == (
            built.passed,
            built.margin,
            built.figures,
        )
        assert result.reason == built.reason
    assert check_result("zoo:sea_topic", "micro") is not None
    assert check_result("not_built", "micro") is None


def test_second_build_reuses_the_cache(micro_zoo):
    start = time.time()
    again = build_zoo("micro", progress=False)
    assert all(r.cached for r in again)
    assert time.time() - start < 30


def test_lora_organism_is_a_peft_adapter(micro_zoo, micro_root):
    org = get_organism("music_lora")
    assert org.adapter and org.finetuned is None
    folder = resolve_ref(org.adapter, "micro")
    assert (micro_root / "music_lora" / "model" / "adapter_config.json").exists()
    assert folder.endswith("model")
    pair = load_pair(org, size="micro")
    batch = pair.encode(["Once upon a time, Mia"])
    assert not (pair.logits("base", batch) == pair.logits("finetuned", batch)).all()


def test_perturbation_ground_truth_is_recorded(micro_zoo, micro_root):
    org = with_built_ground_truth(get_organism("perturb_scale_k20"), "micro")
    assert len(set(org.ground_truth.neurons)) == 20
    record = json.loads((micro_root / "perturb_scale_k20" / "perturbation.json").read_text())
    assert {(e["layer"], e["neuron"]) for e in record["neurons"]} == set(org.ground_truth.neurons)


def test_registry_lists_enough_organisms_with_kinds():
    organisms = all_organisms()
    assert len(organisms) >= 9
    kinds = {o.kind for o in organisms.values()}
    assert {"toy", "perturbation", "null"} <= kinds
    assert any(o.adapter for o in organisms.values())


def test_bad_organism_inputs_are_clear(tmp_path, monkeypatch):
    with pytest.raises(OrganismError, match="unknown organism 'nope'; known:"):
        get_organism("nope")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    monkeypatch.setenv("DIFFSCOPE_ORGANISMS", str(tmp_path))
    with pytest.raises(OrganismError, match="broken.yaml is not valid YAML"):
        all_organisms()
    (tmp_path / "broken.yaml").write_text("name: x\nkind: toy\ntype: topic\nbase: a\n")
    with pytest.raises(OrganismError, match="ground_truth: Field required"):
        all_organisms()
    monkeypatch.setenv("DIFFSCOPE_ORGANISMS", str(tmp_path / "missing"))
    with pytest.raises(OrganismError, match="not a folder"):
        all_organisms()


def test_unbuilt_zoo_reference_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path))
    with pytest.raises(OrganismError, match="diffscope zoo build"):
        resolve_ref("zoo:sea_topic", "micro")


def test_editing_one_recipe_rekeys_only_its_organism(tmp_path, monkeypatch):
    import inspect

    from diffscope.organisms.training import SIZES
    from diffscope.organisms.zoo import finetune_key

    names = ("sad_stories", "sea_topic", "music_lora", "null_adapter")
    before = {n: finetune_key(get_organism(n), SIZES["micro"], tmp_path) for n in names}
    source = inspect.getsource

    def edited(obj):
        text = source(obj)
        return text + "# edited\n" if obj.__name__.endswith(".sea_topic") else text

    monkeypatch.setattr(inspect, "getsource", edited)
    after = {n: finetune_key(get_organism(n), SIZES["micro"], tmp_path) for n in names}
    assert [n for n in names if before[n] != after[n]] == ["sea_topic"]
