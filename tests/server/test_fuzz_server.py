"""The fuzz suite: a real server process (`python -m diffscope.server` over the micro zoo) under
hostile input, through the real mcp client and through raw bytes.

- Hypothesis-generated arguments for every tool, unknown tool names and hundreds of stray
  argument names over stdio: every answer is a tool result (an error is short and never an
  internal error), nothing shows the organism's ground truth, no call hangs, the server lives.
- Malformed JSON-RPC written raw to the stdio server and POSTed raw over HTTP: each gets exactly
  one JSON-RPC error with the right id (null for parse errors), and the server keeps answering.

A few hundred calls in all, kept well under a minute; `benchmarks/fuzz_server.py` is the long run.
"""

from __future__ import annotations

from typing import Any

import pytest
from fuzzsupport import (
    JSONRPC_ISH,
    MALFORMED,
    ORGANISM,
    RawStdio,
    expected_id,
    http_client,
    http_server,
    http_session,
    needs_answer,
    raw_post,
    server_command,
    stdio_client,
)
from hostile import CALLS, UNKNOWN_TOOLS, json_safe, leaked, needles, problems, shown
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffscope.organisms.registry import get_organism
from diffscope.organisms.zoo import build_zoo

TOOL_CALLS = 120
UNKNOWN_CALLS = 30
RAW_MESSAGES = 60
FUZZ = settings(
    deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def organism() -> Any:
    """The served organism, built first if this test home lacks it."""
    build_zoo("micro", only=[ORGANISM], progress=False)
    return get_organism(ORGANISM)


@pytest.fixture(scope="module")
def raw_stdio(organism: Any):
    server = RawStdio(server_command(organism.name))
    yield server
    server.close()


def check_answer(tool: str, args: dict[str, Any], result: Any, hidden: dict[str, str]) -> None:
    text = shown(result)
    found = problems(text, result.is_error, result.structured_content)
    found += [f"leak: {what}" for what in leaked(text, hidden)]
    assert not found, (tool, str(args)[:300], found, text[:500])


def test_generated_tool_calls_over_stdio(organism):
    hidden = needles(organism)
    counts = {"ok": 0, "error": 0}
    with stdio_client(organism.name) as client:

        @settings(FUZZ, max_examples=TOOL_CALLS)
        @given(call=CALLS, raw_nan=st.booleans())
        def tool_call(call: tuple[str, dict[str, Any]], raw_nan: bool) -> None:
            tool, args = call
            sent = args if raw_nan else json_safe(args)
            result = client.call(tool, sent)
            counts["error" if result.is_error else "ok"] += 1
            check_answer(tool, sent, result, hidden)

        @settings(FUZZ, max_examples=UNKNOWN_CALLS)
        @given(name=UNKNOWN_TOOLS, args=st.dictionaries(st.text(max_size=5), st.integers()))
        def unknown_tool(name: str, args: dict[str, Any]) -> None:
            result = client.call(name, args)
            assert result.is_error and "unknown tool" in shown(result), name[:80]
            check_answer(name[:80], args, result, hidden)

        tool_call()
        unknown_tool()
        after = client.call("query_models", {"prompts": ["Once upon a time"]})
    assert not after.is_error, shown(after)
    assert counts["ok"] > 0 and counts["error"] > 0, counts


@pytest.mark.parametrize(("raw", "want_id", "code"), MALFORMED, ids=lambda v: repr(v)[:30])
def test_each_malformed_message_gets_its_error_over_stdio(raw_stdio, raw, want_id, code):
    answers = raw_stdio.answers_to(raw)
    assert len(answers) == 1, (raw[:80], answers)
    answer = answers[0]
    assert answer.get("jsonrpc") == "2.0" and answer.get("id") == want_id, (raw[:80], answer)
    if code is not None:
        assert answer["error"]["code"] == code, (raw[:80], answer)
        assert len(answer["error"]["message"]) < 300


def test_generated_malformed_messages_over_stdio(raw_stdio):
    @settings(FUZZ, max_examples=RAW_MESSAGES)
    @given(raw=JSONRPC_ISH)
    def message(raw: bytes) -> None:
        if not raw.strip(b" \t\r\n"):
            return  # a line of JSON whitespace is no message
        answers = raw_stdio.answers_to(raw)
        if not needs_answer(raw):  # a well-formed notification or response
            assert answers == [], (raw[:80], answers)
            return
        assert len(answers) == 1, (raw[:80], answers)
        assert answers[0].get("id") == expected_id(raw), (raw[:80], answers[0])
        assert "error" in answers[0] or "result" in answers[0], answers[0]

    message()
    last = raw_stdio.answers_to(b'{"jsonrpc":"2.0","id":"last","method":"ping"}')
    assert len(last) == 1 and last[0]["id"] == "last" and last[0]["result"] == {}
    assert raw_stdio.proc.poll() is None


def test_malformed_messages_over_http(organism):
    with http_server(organism.name) as url:
        headers = http_session(url)
        for raw, want_id, code in MALFORMED:
            status, messages = raw_post(url, headers, raw)
            assert len(messages) == 1, (raw[:80], status, messages)
            answer = messages[0]
            assert answer.get("id") == want_id, (raw[:80], answer)
            if code is not None:
                assert answer["error"]["code"] == code, (raw[:80], answer)
            if code in (-32700, -32600, -32602):
                assert status == 400, (raw[:80], status)
        status, messages = raw_post(url, headers, b'{"jsonrpc":"2.0","id":99,"method":"ping"}')
        assert status == 200 and messages == [{"jsonrpc": "2.0", "id": 99, "result": {}}]
        with http_client(url) as client:  # the real client still works beside the raw posts
            result = client.call("query_models", {"prompts": ["Once upon a time"], "seed": True})
            assert result.is_error and "not a boolean" in shown(result)
            assert not client.call("query_models", {"prompts": ["Once upon a time"]}).is_error


def test_the_http_guard_hands_good_and_oversized_bodies_on_intact():
    """Well-formed bodies reach the endpoint byte for byte; one past the SDK's size limit is
    handed on unparsed (for the SDK to refuse); a malformed one never reaches it."""
    import anyio
    import httpx

    from diffscope.server.jsonrpc_guard import MAX_BODY_BYTES, JsonRpcGuard

    seen: list[bytes] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    good = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    chunk = b"x" * (1 << 20)

    async def big() -> Any:
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=JsonRpcGuard(endpoint))
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.post("/mcp", content=good, headers=headers),
                await client.post("/mcp", content=b"{oops", headers=headers),
                await client.post("/mcp", content=big(), headers=headers),
                await client.post("/mcp", content=b"{oops", headers={"content-type": "text/plain"}),
            ]

    replies = anyio.run(main)
    assert [reply.status_code for reply in replies] == [200, 400, 200, 200]
    assert replies[1].json()["error"]["code"] == -32700
    assert seen[0] == good and len(seen[1]) > MAX_BODY_BYTES and seen[2] == b"{oops"
