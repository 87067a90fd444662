"""MiniMind-3's SFT rows (sft_t2t*.jsonl): tools, tool calls, tool turns and reasoning validate,
load, and render through the chat template with the loss on exactly the assistant's part."""

from __future__ import annotations

import json

import pytest
from conftest import small_model, small_tokenizer
from test_data import write_rows

from minimind_lib import data
from minimind_lib.data import validate_file

WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
T2T_ROW = {"conversations": [  # as MiniMind-3's files write it: tool lists as JSON text
    {"role": "system", "content": "You are helpful.", "tools": json.dumps([WEATHER])},
    {"role": "user", "content": "北京天气怎么样？"},
    {"role": "assistant", "content": "", "reasoning_content": "需要查天气。",
     "tool_calls": json.dumps([{"name": "get_weather", "arguments": {"city": "北京"}}],
                              ensure_ascii=False)},
    {"role": "tool", "content": '{"weather": "晴"}'},
    {"role": "assistant", "content": "北京今天晴。"},
]}  # fmt: skip
RENDERED = (
    "<|im_start|>system\nYou are helpful.\n\n# Tools\nYou may call these tools. Each call is a "
    'line <tool_call>{"name": ..., "arguments": {...}}</tool_call>.\n<tools>\n'
    + json.dumps(WEATHER)
    + "\n</tools><|im_end|>\n"
    "<|im_start|>user\n北京天气怎么样？<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n需要查天气。\n</think>\n"
    '<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}</tool_call><|im_end|>\n'
    '<|im_start|>tool\n<tool_response>{"weather": "晴"}</tool_response><|im_end|>\n'
    "<|im_start|>assistant\n北京今天晴。<|im_end|>\n"
)
ASSISTANT_PARTS = [
    '<think>\n需要查天气。\n</think>\n<tool_call>{"name": "get_weather", "arguments": '
    '{"city": "北京"}}</tool_call><|im_end|>',
    "北京今天晴。<|im_end|>",
]


@pytest.fixture(scope="module")
def tokenizer():
    return small_tokenizer()


@pytest.fixture
def loaded(tmp_path):
    path = write_rows(tmp_path / "sft_t2t_mini.jsonl", [T2T_ROW])
    return data.load_sft(path, cache_dir=tmp_path / "cache")[0]["messages"]


def test_a_t2t_row_validates_and_loads_in_one_form(tmp_path, loaded):
    assert validate_file(write_rows(tmp_path / "sft.jsonl", [T2T_ROW]), "sft").ok
    assert [m["role"] for m in loaded] == ["system", "user", "assistant", "tool", "assistant"]
    assert loaded[0]["tools"] == [json.dumps(WEATHER)]
    assert loaded[2]["tool_calls"] == [{"name": "get_weather", "arguments": '{"city": "北京"}'}]
    assert loaded[2]["reasoning_content"] == "需要查天气。"
    assert loaded[4]["tool_calls"] is None and loaded[4]["reasoning_content"] is None


def test_the_template_renders_tools_calls_results_and_thinking(tokenizer, loaded):
    assert tokenizer.apply_chat_template(loaded, tokenize=False) == RENDERED


def test_the_loss_covers_exactly_the_assistant_part_and_its_tool_calls(tokenizer, loaded):
    enc = tokenizer.apply_chat_template(loaded, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    spans, current = [], []
    for token, learn in zip(ids, mask, strict=True):
        if learn:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    spans += [current] if current else []
    assert [tokenizer.decode(s) for s in spans] == ASSISTANT_PARTS


def test_trls_sft_trainer_puts_the_loss_on_the_assistant_part_and_its_calls(tokenizer, tmp_path):
    """What 04 trains on: load_sft's rows through SFTTrainer with assistant_only_loss."""
    from trl import SFTConfig, SFTTrainer

    plain = {"conversations": [{"role": "user", "content": "3 plus 4?"},
                               {"role": "assistant", "content": "7"}]}  # fmt: skip
    rows = data.load_sft(write_rows(tmp_path / "sft.jsonl", [T2T_ROW, plain]), cache_dir=tmp_path)
    args = SFTConfig(output_dir=str(tmp_path / "run"), assistant_only_loss=True, max_length=1024,
                     packing=False, activation_checkpointing=False, use_cpu=True, bf16=False,
                     report_to=[], save_strategy="no", disable_tqdm=True)  # fmt: skip
    model = small_model(vocab_size=len(tokenizer))
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    learned = [
        tokenizer.decode(
            [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
        )
        for row in trainer.train_dataset
    ]
    assert learned == ["".join(ASSISTANT_PARTS), "7<|im_end|>"]


def test_openai_style_messages_render_the_same(tokenizer, loaded):
    """At inference: tools as the template's `tools` argument, calls as OpenAI's objects."""
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}}
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "北京天气怎么样？"},
        {"role": "assistant", "content": "", "reasoning_content": "需要查天气。", "tool_calls": [call]},
        {"role": "tool", "content": '{"weather": "晴"}'},
        {"role": "assistant", "content": "北京今天晴。"},
    ]
    assert tokenizer.apply_chat_template(messages, tools=[WEATHER], tokenize=False) == RENDERED


def test_a_plain_conversation_renders_as_before(tokenizer, tmp_path):
    row = {"conversations": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "hi"},
                             {"role": "assistant", "content": "hello"}]}  # fmt: skip
    messages = data.load_sft(write_rows(tmp_path / "sft.jsonl", [row]), cache_dir=tmp_path)[0]
    text = tokenizer.apply_chat_template(messages["messages"], tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nhello<|im_end|>\n"
    )


def turns(*replace: tuple[int, dict]) -> dict:
    conversation = [dict(m) for m in T2T_ROW["conversations"]]
    for i, message in replace:
        conversation[i] = message
    return {"conversations": conversation}


MALFORMED = [
    (turns((2, T2T_ROW["conversations"][2] | {"tool_calls": '[{"name": "get_weather"'})),
     "malformed JSON: Expecting ',' delimiter at column 24 (conversations[2].tool_calls)"),
    (turns((2, T2T_ROW["conversations"][2] | {"tool_calls": '[{"arguments": {}}]'})),
     "a tool call without a name (conversations[2].tool_calls[0])"),
    (turns((2, T2T_ROW["conversations"][2] | {"tool_calls": '{"name": "x"}'})),
     "expected a JSON list of objects (conversations[2].tool_calls)"),
    (turns((2, {"role": "assistant", "content": "Let me look."})),
     "a tool turn without a tool call before it (conversations[3].role)"),
    (turns((1, {"role": "user", "content": "hi", "tools": "[]"})),
     "tools on a user turn (conversations[1].tools)"),
    (turns((4, {"role": "assistant", "content": "", "reasoning_content": "hmm"})),
     "empty content (conversations[4].content)"),
    (turns((4, {"role": "assistant", "content": "ok", "tool_call": "[]"})),
     "unexpected field (conversations[4].tool_call)"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "problem"), MALFORMED)
def test_malformed_t2t_rows_name_file_line_and_field(tmp_path, row, problem):
    path = write_rows(tmp_path / "sft_t2t_mini.jsonl", [T2T_ROW, row])
    assert validate_file(path, "sft").problems == [f"{path}:2: {problem}"]


def test_dpo_and_rlaif_rows_stay_plain(tmp_path):
    """Only SFT files take the tool role and fields; elsewhere they are still an error."""
    conversation = T2T_ROW["conversations"][1:4]
    path = write_rows(tmp_path / "rlaif.jsonl", [{"conversations": conversation}])
    (problem,) = validate_file(path, "rlaif").problems
    assert problem == f"{path}:1: unexpected field (conversations[1].reasoning_content)"


def test_download_takes_minimind3s_files_by_kind(tmp_path, capsys):
    for name in ("sft_t2t_mini.jsonl", "rlaif.jsonl"):
        (tmp_path / name).write_text("{}\n")  # already there: nothing is fetched
    paths = data.download(["sft", "rlaif"], tmp_path, data_set="minimind3")
    assert paths == [tmp_path / "sft_t2t_mini.jsonl", tmp_path / "rlaif.jsonl"]
    assert capsys.readouterr().out.count("already there") == 2
    with pytest.raises(data.DataError, match=r"unknown data set 'minimind9'.*minimind3"):
        data.download(["sft"], tmp_path, data_set="minimind9")
    with pytest.raises(SystemExit):  # argparse refuses an unknown choice
        data.main(["download", "--set", "minimind9", "--dir", str(tmp_path)])


def test_the_profile_picks_the_set(monkeypatch):
    from minimind_lib.profiles import get_profile

    monkeypatch.setenv("MINIMIND_PROFILE_OVERRIDES", '{"data_set": "minimind3"}')
    full = get_profile("full")
    assert full.data_file("sft").name == "sft_t2t_mini.jsonl"
    assert full.data_file("pretrain").name == "pretrain_t2t_mini.jsonl"
    assert get_profile("tiny").data_file("sft").name == "sft_mini_512.jsonl"  # synthetic names
    monkeypatch.setenv("MINIMIND_PROFILE_OVERRIDES", '{"data_set": "minimind9"}')
    with pytest.raises(ValueError, match="unknown data set 'minimind9'"):
        get_profile("full").data_file("sft")


# ---- your own data: a notebook's DATA_FILE ------------------------------------------------------
def test_your_own_file_is_taken_and_checked_for_the_stages_fields(tmp_path):
    from minimind_lib.profiles import get_profile

    tiny = get_profile("tiny")
    assert data.stage_data_file(tiny, "sft") == tiny.data_file("sft")  # no DATA_FILE
    own = write_rows(tmp_path / "mine.jsonl", [T2T_ROW])
    assert data.stage_data_file(tiny, "sft", str(own)) == own
    assert data.stage_data_file(tiny, "rlaif", own) == own  # conversations too; check_file decides
    with pytest.raises(data.DataError) as error:
        data.stage_data_file(tiny, "pretrain", own)
    assert str(error.value) == (
        f'{own}: its rows look like sft rows ({{"conversations": [...]}}); this stage trains on '
        'pretrain rows ({"text": ...} a line)'
    )
    with pytest.raises(
        data.DataError, match=r"missing\.jsonl: file not found \(DATA_FILE: your own dpo"
    ):
        data.stage_data_file(tiny, "dpo", tmp_path / "missing.jsonl")


def test_a_stage_on_your_own_file_takes_the_real_data_path(tmp_path):
    from minimind_lib.profiles import ROOT, get_profile
    from minimind_lib.runtime import start

    own = write_rows(tmp_path / "mine.jsonl", [T2T_ROW])
    profile = start("tiny", data_files={"sft": str(own), "dpo": None}, show=False)
    assert profile.data == "own" and profile.name == "tiny"  # the tiny model and budget
    assert profile.data_file("sft") == own
    assert profile.data_file("dpo") == get_profile("tiny").data_file("dpo")  # the others unchanged
    assert f"own (sft: {own})" in profile.table()
    assert start("tiny", data_files={"sft": None}, show=False).data == "synthetic"
    # a relative path is taken from the course folder (a kernel runs in notebooks/)
    relative = own.relative_to(ROOT) if own.is_relative_to(ROOT) else None
    if relative is not None:
        assert start("tiny", data_files={"sft": str(relative)}, show=False).data_file("sft") == own
    with pytest.raises(data.DataError, match="file not found"):
        start("tiny", data_files={"sft": "no/such/file.jsonl"}, show=False)
