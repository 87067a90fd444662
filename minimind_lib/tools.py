"""Tool calls at chat time: read the calls out of a reply, run them in Python, answer again.

The chat template renders a call as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
inside the assistant's turn and a result as a `tool` turn (chat_template.jinja). A model that
learned the format writes such a block; `parse_tool_calls` reads it back, `run_tool_calls`
runs each call with a Python function of that name, and `answer_with_tools` loops until the
model answers in words. `answer_batch_with_tools` does the same for many questions at once
(the probes): one batched generation for the calls, one for the answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from .chat import Sampling, chat, chat_prompts, generate_batch, reply_text
from .tokenizer import TOOL_CALL, TOOL_CALL_END

CALL_BLOCK = re.compile(re.escape(TOOL_CALL) + r"(.*?)" + re.escape(TOOL_CALL_END), re.S)


def parse_tool_calls(reply: str) -> tuple[str, list[dict], list[str]]:
    """(the reply's text without its call blocks, the calls as {"name", "arguments"}, the
    problems of the blocks that are not a call: malformed JSON, no name, an unclosed block)."""
    calls, problems = [], []
    for k, match in enumerate(CALL_BLOCK.finditer(reply)):
        try:
            call = json.loads(match.group(1))
        except json.JSONDecodeError as e:
            problems.append(f"call {k}: malformed JSON: {e.msg} at column {e.colno}")
            continue
        name = call.get("name") if isinstance(call, dict) else None
        arguments = call.get("arguments", {}) if isinstance(call, dict) else None
        if not isinstance(name, str) or not isinstance(arguments, dict):
            problems.append(f'call {k}: expected {{"name": text, "arguments": {{...}}}}')
            continue
        calls.append({"name": name, "arguments": arguments})
    text = CALL_BLOCK.sub("", reply)
    if TOOL_CALL in text:
        problems.append(f"a {TOOL_CALL} block that is never closed")
    return text.strip(), calls, problems


def run_tool_calls(calls: Sequence[dict], functions: dict[str, Callable[..., str]]) -> list[str]:
    """Each call's result as text; an unknown tool or wrong arguments give an error text
    instead, which the model reads as the tool's answer (as an API would return it)."""
    results = []
    for call in calls:
        function = functions.get(call["name"])
        if function is None:
            results.append(f"unknown tool {call['name']!r}; tools: {', '.join(functions)}")
            continue
        try:
            results.append(str(function(**call["arguments"])))
        except TypeError as e:
            results.append(f"bad arguments for {call['name']}: {e}")
    return results


def tool_turns(text: str, calls: Sequence[dict], results: Sequence[str]) -> list[dict]:
    """The assistant turn that made the calls and one `tool` turn per result."""
    assistant = {"role": "assistant", "content": text, "tool_calls": list(calls)}
    return [assistant] + [{"role": "tool", "content": r} for r in results]


def answer_with_tools(
    model,
    tokenizer,
    messages: Sequence[dict],
    functions: dict[str, Callable[..., str]],
    sampling: Sampling | None = None,
    max_rounds: int = 3,
) -> list[dict]:
    """The turns the model adds to `messages`: calls and their results, up to `max_rounds`
    times, then its answer (the last turn, an assistant turn without calls)."""
    history, added = list(messages), []
    for _ in range(max_rounds):
        text, calls, _ = parse_tool_calls(chat(model, tokenizer, history, sampling))
        if not calls:
            break
        turns = tool_turns(text, calls, run_tool_calls(calls, functions))
        history += turns
        added += turns
    else:  # still calling after max_rounds: the answer is what it writes now
        text = parse_tool_calls(chat(model, tokenizer, history, sampling))[0]
    added.append({"role": "assistant", "content": text})
    return added


def answer_batch_with_tools(
    model,
    tokenizer,
    conversations: Sequence[list[dict]],
    functions: dict[str, Callable[..., str]],
    max_new_tokens: int = 48,
) -> list[dict]:
    """Greedy answers to many conversations through at most one round of calls, batched.

    For each: {"calls": the calls it made, "problems": blocks that were not a call,
    "raw": the final reply as generated (its end marker included, for template compliance),
    "answer": the final reply's text}."""
    first = generate_batch(model, tokenizer, chat_prompts(tokenizer, conversations), max_new_tokens)
    parsed = [parse_tool_calls(reply_text(raw, tokenizer)[0]) for raw in first]
    follow_ups, rows = [], []
    for conversation, raw, (text, calls, problems) in zip(conversations, first, parsed, strict=True):
        rows.append({"calls": calls, "problems": problems, "raw": raw, "answer": text})
        if calls:
            turns = tool_turns(text, calls, run_tool_calls(calls, functions))
            follow_ups.append((len(rows) - 1, list(conversation) + turns))
    if follow_ups:
        second = generate_batch(
            model, tokenizer, chat_prompts(tokenizer, [c for _, c in follow_ups]), max_new_tokens
        )
        for (row, _), raw in zip(follow_ups, second, strict=True):
            rows[row]["raw"] = raw
            rows[row]["answer"] = parse_tool_calls(reply_text(raw, tokenizer)[0])[0]
    return rows
