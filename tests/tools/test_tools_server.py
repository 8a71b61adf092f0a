"""The diffing tools through a real in-process MCP client on a micro organism: schemas, structured
results on defaults, profiles, budgets, progress and the messages of bad arguments."""

from __future__ import annotations

import base64

import pytest
from toolsupport import DEFAULT_ARGS, TEST_CORPUS, everything_in, live_client, text_of

from diffscope.diffing.artifacts import Artifacts
from diffscope.server import create_server
from diffscope.tools import METHOD_TAGS, TOOLS, Budget, ToolContext

EXPECTED = {
    "query_models": set(),
    "kl_probe": {"kl"},
    "top_promoted_tokens": {"diffmining"},
    "top_neurons": {"neurons"},
    "neuron_exemplars": {"neurons"},
    "neuron_clusters": {"neurons"},
    "difference_lens": {"lens"},
    "steer": {"steering"},
    "amplify": {"amplification"},
    "top_latents": {"crosscoder"},
    "latent_exemplars": {"crosscoder"},
    "overview": {"overview"},
}


def expected_tools() -> dict[str, set[str]]:
    return EXPECTED


def test_registry_holds_exactly_the_diffing_tools(tool_context):
    assert {name: set(t.tags) for name, t in TOOLS.items()} == expected_tools()


def test_list_tools_shows_input_and_output_schemas(method_client):
    tools = {tool.name: tool for tool in method_client.run("list_tools").tools}
    assert set(tools) == set(expected_tools())
    for name, tool in tools.items():
        assert tool.description and not tool.description.startswith(" "), name
        assert tool.input_schema["type"] == "object", name
        assert "mcp_context" not in tool.input_schema.get("properties", {}), name
        assert tool.output_schema is not None and tool.output_schema["properties"], name
        assert tool.annotations.read_only_hint is True, name
        for arg, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description") or "$ref" in schema or "anyOf" in schema, (name, arg)
    query = tools["query_models"].input_schema
    assert query["required"] == ["prompts"]
    assert query["properties"]["max_new_tokens"]["maximum"] == 128
    assert query["properties"]["model"]["enum"] == ["base", "finetuned", "both"]
    assert tools["kl_probe"].output_schema["properties"]["top"]["type"] == "array"
    assert "required" not in tools["top_neurons"].input_schema


def test_every_tool_returns_structured_content_on_defaults(method_client):
    for name in expected_tools():
        result = method_client.call(name, DEFAULT_ARGS.get(name, {}))
        assert not result.is_error, (name, text_of(result))
        assert isinstance(result.structured_content, dict) and result.structured_content, name
        if name == "kl_probe":
            images = [block for block in result.content if block.type == "image"]
            assert len(images) == 1
            assert base64.b64decode(images[0].data).startswith(b"\x89PNG")
            assert result.structured_content["plotted"].startswith("KL per token")


def test_results_carry_what_each_tool_promises(method_client):
    neurons = method_client.call("top_neurons", {"k": 3, "layers": [1]}).structured_content
    assert [n["layer"] for n in neurons["neurons"]] == [1, 1, 1]
    assert neurons["neurons"][0]["rank"] == 1 and len(neurons["neurons"][0]["exemplars"]) <= 2
    top = neurons["neurons"][0]
    detail = method_client.call(
        "neuron_exemplars", {"layer": top["layer"], "neuron": top["neuron"], "k": 3}
    ).structured_content
    assert detail["rank_rms"] == 1 and detail["intrinsic"] is not None
    assert all("[[" in ex["text"] and "]]" in ex["text"] for ex in detail["exemplars"])
    kl = method_client.call("kl_probe", {"prompts": ["Once upon a time", "Mia"], "k": 3})
    got = kl.structured_content
    assert got["source"] == "prompts" and got["n_samples"] == 2 and len(got["top"]) == 3
    assert got["top"][0]["kl"] >= got["top"][-1]["kl"]
    mined = method_client.call(
        "top_promoted_tokens", {"k": 5, "order_by": "mean_diff", "topics": False}
    ).structured_content
    diffs = [t["mean_diff"] for t in mined["promoted"]]
    assert diffs == sorted(diffs, reverse=True) and mined["topics"] == []
    assert [t["mean_diff"] for t in mined["demoted"]] == sorted(
        t["mean_diff"] for t in mined["demoted"]
    )
    lens = method_client.call(
        "difference_lens", {"layer": 0, "position": 2, "k": 4, "patchscope": True}
    ).structured_content
    assert [p["position"] for p in lens["positions"]] == [2]
    assert len(lens["positions"][0]["positive"]) == 4 and lens["positions"][0]["patchscope"]
    steered = method_client.call(
        "steer", {"kind": "neuron", "layer": 1, "neuron": 3, "strength": 8, "prompts": ["Mia"]}
    ).structured_content
    assert steered["kind"] == "neuron" and len(steered["results"]) == 1
    amplified = method_client.call(
        "amplify", {"prompts": ["Mia"], "n_samples": 3, "max_new_tokens": 4}
    ).structured_content
    assert len(amplified["results"][0]["samples"]) == 3
    latents = method_client.call("top_latents", {"side": "base", "k": 4}).structured_content
    assert latents["side"] == "base" and len(latents["latents"]) == 4
    assert latents["crosscoder"]["layer"] == 1 and latents["crosscoder"]["dict_size"] == 1024
    assert all(item["nu_reconstruction"] is not None for item in latents["latents"])
    shared = method_client.call(
        "top_latents", {"side": "shared", "exemplars": 0}
    ).structured_content
    assert all(item["label"] == "shared" for item in shared["latents"])
    chosen = latents["latents"][0]["latent"]
    detail = method_client.call("latent_exemplars", {"latent": chosen, "k": 2}).structured_content
    assert detail["info"]["latent"] == chosen and len(detail["info"]["exemplars"]) <= 2
    assert all("[[" in ex["text"] for ex in detail["info"]["exemplars"])
    by_latent = method_client.call(
        "steer", {"kind": "latent", "latent": chosen, "prompts": ["Mia"], "max_new_tokens": 4}
    ).structured_content
    assert by_latent["kind"] == "latent" and "latent" in by_latent["label"]
    both = method_client.call(
        "query_models", {"prompts": ["Mia", "Leo"], "model": "base", "max_new_tokens": 4}
    ).structured_content
    assert [a["finetuned"] for a in both["answers"]] == [None, None]
    assert all(isinstance(a["base"], str) for a in both["answers"])


@pytest.mark.parametrize("profile", ["blackbox", "method", *METHOD_TAGS, "kl,lens"])
def test_profiles_expose_exactly_their_tools(tool_context, profile):
    tags = expected_tools()
    if profile == "blackbox":
        expected = {"query_models"}
    elif profile == "method":
        expected = set(tags)
    else:
        wanted = set(profile.split(","))
        expected = {"query_models"} | {name for name, t in tags.items() if t & wanted}
    with live_client(create_server(tool_context, profile)) as client:
        listed = {tool.name for tool in client.run("list_tools").tools}
        hidden = sorted(set(tags) - expected)
        refused = client.call(hidden[0], DEFAULT_ARGS.get(hidden[0], {})) if hidden else None
    assert listed == expected
    if refused is not None:
        assert refused.is_error


@pytest.mark.parametrize(
    ("tool", "args", "wanted"),
    [
        (
            "neuron_exemplars",
            {"layer": 7, "neuron": 0},
            "layer 7 is out of range: this pair has layers 0..1",
        ),
        (
            "neuron_exemplars",
            {"layer": 0, "neuron": 999},
            "neuron 999 is out of range: each layer has neurons 0..255",
        ),
        ("neuron_exemplars", {"neuron": 4}, "give the neuron's layer too"),
        ("top_neurons", {"layers": [0, 5]}, "layers entry 5 is out of range"),
        ("difference_lens", {"layer": 2}, "layer 2 is out of range"),
        ("steer", {"kind": "neuron", "layer": 0}, "kind='neuron' needs both layer and neuron"),
        ("steer", {"kind": "latent", "latent": 10**6}, "latent 1000000 is out of range"),
        ("latent_exemplars", {"latent": 5000}, "this crosscoder has latents 0..1023"),
        ("top_latents", {"layer": 0}, "no crosscoder has been trained for this pair at layer 0"),
        ("query_models", {"prompts": ["word " * 200]}, "shorten the prompt"),
        ("query_models", {"prompts": ["hi"], "max_new_tokens": 128}, "lower max_new_tokens"),
        ("query_models", {"prompts": [""]}, "prompts.0"),
        ("query_models", {"prompts": []}, "prompts"),
        ("kl_probe", {"prompts": ["x" * 9000]}, "prompts.0"),
        ("amplify", {"alpha": 1e9}, "alpha"),
        ("top_neurons", {"k": 0}, "k: Input should be greater than or equal to 1"),
        ("top_neurons", {"metric": "bogus"}, "metric"),
        ("top_neurons", {"nonsense": 1}, "unknown argument(s) for top_neurons: nonsense"),
    ],
)
def test_bad_arguments_come_back_as_messages_saying_what_to_fix(method_client, tool, args, wanted):
    result = method_client.call(tool, args)
    assert result.is_error
    message = text_of(result)
    assert wanted in message, message
    assert "internal error" not in message


def test_budget_is_charged_per_prompt_and_model(tool_context):
    ctx = ToolContext(pair=tool_context.pair, budget=Budget(model_queries=5))
    with live_client(create_server(ctx, "method")) as client:
        first = client.call("query_models", {"prompts": ["a", "b"], "max_new_tokens": 2})
        free = client.call("top_neurons", {"k": 1})
        over = client.call("amplify", {"prompts": ["a", "b"], "n_samples": 1})
        used = ctx.budgets.usage()
    assert not first.is_error and not free.is_error
    assert used.model_queries == 4 and used.generated_tokens > 0
    assert over.is_error and "budget spent: model_queries used 4 of 5" in text_of(over)


def test_first_use_computation_sends_progress(tool_context, tmp_path):
    fresh = Artifacts(tool_context.pair.pair, corpus=TEST_CORPUS, root=tmp_path)
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    with live_client(create_server(ToolContext(pair=fresh), "neurons")) as client:
        result = client.call("top_neurons", {"k": 2}, progress_callback=on_progress)
    assert not result.is_error
    assert any(message and message.startswith("neuron profile") for _, message in seen), seen
    assert any(path.name.startswith("neurons-") for path in tmp_path.iterdir())


def test_crosscoder_tools_say_when_no_crosscoder_was_trained(tool_context, tmp_path):
    bare = Artifacts(tool_context.pair.pair, corpus=TEST_CORPUS, root=tmp_path)
    with live_client(create_server(ToolContext(pair=bare), "crosscoder,steering")) as client:
        answers = [
            client.call("top_latents"),
            client.call("latent_exemplars", {"latent": 3}),
            client.call("steer", {"kind": "latent"}),
        ]
    for answer in answers:
        assert answer.is_error
        assert "no crosscoder has been trained for this pair" in text_of(answer)


def test_a_plain_model_pair_gets_its_artifacts_memoised(tool_context):
    ctx = ToolContext(pair=tool_context.pair.pair)
    with live_client(create_server(ctx, "lens")) as client:
        first = client.call("difference_lens", {"k": 2})
        second = client.call("difference_lens", {"k": 2})
    assert not first.is_error and everything_in(first) == everything_in(second)
    assert isinstance(ctx.cache["tools.artifacts"], Artifacts)
