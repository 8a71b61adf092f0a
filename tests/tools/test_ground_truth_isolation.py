"""Ground truth never reaches an investigator: for every micro organism, everything the method
server shows (tool list, instructions, every tool's answer on defaults, resources, prompts and a
few error messages) is scanned for the ground truth.

What counts as a leak: the ground-truth description, any key fact's `fact` sentence, the organism's
name or its zoo recipe name, compared case-insensitively with whitespace collapsed. The key facts'
`any_of` phrases are deliberately not scanned: they are ordinary words ("sea", "fish", "neurons")
that a model trained on the world corpus may write for any organism, so finding them proves
nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hostile import needles, squash
from toolsupport import DEFAULT_ARGS, everything_in, live_client, loaded

from diffscope.organisms.registry import get_organism
from diffscope.organisms.schema import Organism
from diffscope.organisms.zoo import toy_organisms
from diffscope.server import create_server
from diffscope.server.app import ORGANISM_URI
from diffscope.tools import TOOLS, load_tool_modules

MICRO_ORGANISMS = [org.name for org in toy_organisms()]
BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("neuron_exemplars", {"layer": 99, "neuron": 0}),
    ("neuron_exemplars", {"layer": 0, "neuron": 10**6}),
    ("latent_exemplars", {"latent": 10**6}),
    ("query_models", {"prompts": ["word " * 200]}),
    ("top_neurons", {"mode": "sideways"}),
    ("amplify", {"n_samples": 99}),
]


def dump(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, default=str)


def collect(org: Organism) -> dict[str, str]:
    """Everything the method server showed for `org`, by source."""
    load_tool_modules()
    name = org.name
    server = create_server(lambda: loaded(name), "method", organism=org)
    shown: dict[str, str] = {}
    with live_client(server) as client:
        shown["instructions"] = str(client.client.instructions)
        shown["tools/list"] = dump(client.run("list_tools"))
        for tool in TOOLS:
            result = client.call(tool, DEFAULT_ARGS.get(tool, {}))
            # on identical models a mean-difference direction does not exist: that is an answer
            nothing_to_steer = "do not differ" in everything_in(result)
            assert not result.is_error or nothing_to_steer, (name, tool, everything_in(result))
            if nothing_to_steer:
                assert org.type == "null" and tool == "steer", (name, tool)
            shown[f"tool {tool}"] = everything_in(result)
        for i, (tool, args) in enumerate(BAD_CALLS):
            result = client.call(tool, args)
            assert result.is_error, (name, tool, args)
            shown[f"error {i} {tool}"] = everything_in(result)
        shown["resources/list"] = dump(client.run("list_resources"))
        shown["resources/templates"] = dump(client.run("list_resource_templates"))
        for item in client.run("list_resources").resources:
            shown[f"resource {item.uri}"] = dump(client.run("read_resource", item.uri))
        prompts = client.run("list_prompts").prompts
        shown["prompts/list"] = dump(prompts)
        for prompt in prompts:
            shown[f"prompt {prompt.name}"] = dump(client.run("get_prompt", prompt.name))
    assert f"resource {ORGANISM_URI}" in shown
    return shown


@pytest.mark.parametrize("name", MICRO_ORGANISMS)
def test_no_output_reveals_the_ground_truth(name):
    org = get_organism(name)
    shown = collect(org)
    assert len(shown) >= len(TOOLS) + len(BAD_CALLS)
    leaks = [
        f"{what} found in {source}"
        for source, text in shown.items()
        for what, needle in needles(org).items()
        if needle in squash(text)
    ]
    assert not leaks, leaks


def test_the_scan_would_catch_a_leak():
    org = get_organism("sea_topic")
    planted = f"the tokens say: {org.ground_truth.key_facts[0].fact.upper()}!"
    assert any(needle in squash(planted) for needle in needles(org).values())
    assert not any(needle in squash("the sea, waves and fish") for needle in needles(org).values())
