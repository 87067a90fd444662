"""Tool calls (minimind_lib.tools) and the synthetic set's tool chats (scripts/tool_sft.py trains on them)."""

from __future__ import annotations

import json

import pytest
from conftest import small_tokenizer

from minimind_lib import data, synthetic, tools
from minimind_lib.chat import chat_prompt

CALL = '<tool_call>{"name": "lookup", "arguments": {"country": "Vomia", "relation": "capital"}}</tool_call>'


@pytest.fixture(scope="module")
def world():
    return synthetic.build_world(42)


@pytest.fixture(scope="module")
def tool_rows(world):
    return synthetic.tool_conversations(synthetic.random.Random(3), world, count=200)


def test_a_call_is_read_back_with_its_arguments():
    text, calls, problems = tools.parse_tool_calls("Let me look. " + CALL)
    assert text == "Let me look." and problems == []
    assert calls == [{"name": "lookup", "arguments": {"country": "Vomia", "relation": "capital"}}]
    assert tools.parse_tool_calls("The capital of Vomia is Bel.") == ("The capital of Vomia is Bel.", [], [])


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ('<tool_call>{"name": "lookup", "arguments": {</tool_call>', "call 0: malformed JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', 'call 0: expected {"name"'),
        ('<tool_call>["lookup"]</tool_call>', 'call 0: expected {"name"'),
        ('<tool_call>{"name": "lookup", "arguments": {', "never closed"),
    ],
)
def test_a_block_that_is_not_a_call_is_a_problem_not_a_call(reply, problem):
    _, calls, problems = tools.parse_tool_calls(reply)
    assert calls == [] and len(problems) == 1 and problem in problems[0]


def test_calls_run_and_errors_come_back_as_the_tools_answer(world):
    functions = {"lookup": lambda country, relation: synthetic.lookup(world, country, relation)}
    country = world.countries[0]
    calls = [
        {"name": "lookup", "arguments": {"country": country["name"].zh, "relation": "capital"}},
        {"name": "lookup", "arguments": {"country": "Atlantis", "relation": "capital"}},
        {"name": "lookup", "arguments": {"country": country["name"].en, "relation": "size"}},
        {"name": "lookup", "arguments": {"place": "x"}},
        {"name": "weather", "arguments": {}},
    ]
    results = tools.run_tool_calls(calls, functions)
    assert results[0] == country["capital"].zh  # in the language the country was named in
    assert results[1] == "unknown country 'Atlantis'"
    assert results[2].startswith("unknown relation 'size'")
    assert results[3].startswith("bad arguments for lookup")
    assert results[4] == "unknown tool 'weather'; tools: lookup"


def test_the_loop_runs_the_call_and_shows_the_model_its_result(monkeypatch):
    """answer_with_tools with a scripted model: a call first, an answer once it sees the result."""
    tokenizer = small_tokenizer()
    seen = []

    def scripted_chat(model, tok, history, sampling=None):
        seen.append(chat_prompt(tok, history))
        return CALL if len(seen) == 1 else "The capital of Vomia is Bel."

    monkeypatch.setattr(tools, "chat", scripted_chat)
    question = [{"role": "user", "content": "What is the capital of Vomia?"}]
    added = tools.answer_with_tools(None, tokenizer, question, {"lookup": lambda country, relation: "Bel"})
    assert [m["role"] for m in added] == ["assistant", "tool", "assistant"]
    assert added[1]["content"] == "Bel" and added[-1]["content"] == "The capital of Vomia is Bel."
    # the second prompt holds the call as the template renders it, then the result
    assert CALL + "<|im_end|>\n<|im_start|>tool\n<tool_response>Bel</tool_response>" in seen[1]

    monkeypatch.setattr(tools, "chat", lambda *a, **k: CALL)  # a model that never stops calling
    added = tools.answer_with_tools(None, tokenizer, question, {"lookup": lambda **k: "Bel"}, max_rounds=2)
    assert [m["role"] for m in added] == ["assistant", "tool"] * 2 + ["assistant"]


def test_the_batched_loop_sends_back_only_the_rows_that_called(monkeypatch):
    """answer_batch_with_tools with scripted generations: one row calls, the other answers."""
    tokenizer = small_tokenizer()
    prompts_seen = []

    def scripted_batch(model, tok, prompts, max_new_tokens):
        prompts_seen.append(prompts)
        if len(prompts_seen) == 1:
            return [CALL + "<|im_end|>", "Bel, I think.<|im_end|>"]
        return ["The capital of Vomia is Bel.<|im_end|>"]

    monkeypatch.setattr(tools, "generate_batch", scripted_batch)
    questions = [[{"role": "user", "content": "What is the capital of Vomia?"}],
                 [{"role": "user", "content": "And of Bamaland?"}]]  # fmt: skip
    rows = tools.answer_batch_with_tools(None, tokenizer, questions, {"lookup": lambda **k: "Bel"})
    assert [len(p) for p in prompts_seen] == [2, 1]  # the second generation: the calling row only
    assert "<tool_response>Bel</tool_response>" in prompts_seen[1][0]
    assert rows[0]["calls"] == [{"name": "lookup", "arguments": {"country": "Vomia", "relation": "capital"}}]
    assert rows[0]["answer"] == "The capital of Vomia is Bel."
    assert rows[0]["raw"] == "The capital of Vomia is Bel.<|im_end|>"
    assert rows[1] == {"calls": [], "problems": [], "raw": "Bel, I think.<|im_end|>", "answer": "Bel, I think."}


def test_tool_chats_load_and_render_with_the_call_and_result(tmp_path, tool_rows, world):
    path = tmp_path / "sft_tools.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tool_rows), encoding="utf-8")
    assert data.validate_file(path, "sft").ok  # the tools-only system turn has no text
    loaded = data.load_sft(path, cache_dir=tmp_path / "cache")
    with_tool = [r["messages"] for r in loaded if r["messages"][0]["role"] == "system"]
    assert 0.4 < len(with_tool) / len(loaded) < 0.6
    messages = with_tool[0]
    call = json.loads(messages[2]["tool_calls"][0]["arguments"])
    fact = next(f for f in world.facts if call["country"] in (f.country.en, f.country.zh)
                and f.relation == call["relation"])  # fmt: skip
    lang = "en" if call["country"] == fact.country.en else "zh"
    assert messages[3] == {"role": "tool", "content": fact.value[lang], "tools": None, "tool_calls": None,
                           "reasoning_content": None}  # fmt: skip
    assert messages[4]["content"] == fact.statement(lang)
    rendered = small_tokenizer().apply_chat_template(messages, tokenize=False)
    assert f'<tool_call>{{"name": "lookup", "arguments": {json.dumps(call, ensure_ascii=False)}}}</tool_call>' in rendered
    assert f"<tool_response>{fact.value[lang]}</tool_response>" in rendered


def test_tool_chats_ask_only_facts_sft_asks(tool_rows, world):
    asked = {f.key for f in world.asked_facts}
    for row in tool_rows:
        question = next(m["content"] for m in row["conversations"] if m["role"] == "user")
        facts = [f for f in world.facts if any(question == f.question(lang, t) for lang in ("en", "zh")
                                              for t in range(len(f.questions[lang])))]  # fmt: skip
        assert len(facts) == 1 and facts[0].key in asked, question


def test_changed_results_change_the_result_and_the_answer_and_nothing_else(tool_rows, world):
    before = json.dumps(tool_rows)
    changed = synthetic.with_changed_results(tool_rows, world, share=0.5, seed=1)
    assert json.dumps(tool_rows) == before  # the rows given stay as they were
    assert len(changed) == len(tool_rows)
    n_tool, n_changed = 0, 0
    for old, new in zip(tool_rows, changed, strict=True):
        o, n = old["conversations"], new["conversations"]
        if not o[0].get("tools"):
            assert n == o  # plain chats are never touched
            continue
        n_tool += 1
        assert n[:3] == o[:3]  # the tools, the question and the call stay
        if n[3] == o[3]:
            assert n[4] == o[4]
            continue
        n_changed += 1
        call = o[2]["tool_calls"][0]["arguments"]
        lang = "en" if call["country"].isascii() else "zh"
        fact = next(f for f in world.facts if f.country[lang] == call["country"]
                    and f.relation == call["relation"])  # fmt: skip
        assert n[3]["role"] == "tool" and n[3]["content"] != fact.value[lang]
        assert n[4] == {"role": "assistant", "content": synthetic.Fact(
            fact.country, fact.relation, next(v for v in _values(world, fact.relation)
                                             if v[lang] == n[3]["content"])).statement(lang)}  # fmt: skip
    assert 0.3 < n_changed / n_tool < 0.7
    assert synthetic.with_changed_results(tool_rows, world, share=0.0, seed=1) == tool_rows


def _values(world, relation):
    if relation == "capital":
        return [c["capital"] for c in world.countries]
    return [synthetic.Name(*v) for v in synthetic.VALUES[relation]]
