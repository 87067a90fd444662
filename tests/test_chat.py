"""Chatting with a checkpoint: greedy vs sampled, streaming, the stop switch, multi-turn
prompts, loading a stage by name, the chat box's plain-text mode, the report-card figure."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import matplotlib
import pytest
import torch
from conftest import HISTORY, CountedForward, small_chat_model, small_tokenizer

from minimind_lib import profiles
from minimind_lib.chat import (
    Outcome,
    Sampling,
    chat,
    chat_prompt,
    continue_text,
    latest_stage,
    load_stage,
    sample_texts,
    stream_chat,
    stream_text,
    trim_history,
)
from minimind_lib.runtime import StageMissing

matplotlib.use("Agg")
torch.set_num_threads(1)

@pytest.fixture(scope="module")
def tok():
    return small_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return small_chat_model(tok)


def new_ids(model, tok, prompt: str, **kw) -> list[int]:
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, pad_token_id=tok.pad_token_id, **kw)
    return out[0, enc["input_ids"].shape[1] :].tolist()


# ---- greedy and sampled --------------------------------------------------------------------------


def test_temperature_zero_is_greedy_and_deterministic(model, tok):
    assert Sampling(temperature=0).generate_kwargs()["do_sample"] is False
    prompt = "The capital of Vomia is"
    torch.manual_seed(1)
    first = continue_text(model, tok, prompt, Sampling(max_new_tokens=10))
    torch.manual_seed(2)
    assert continue_text(model, tok, prompt, Sampling(max_new_tokens=10)) == first
    # greedy = the argmax of the logits at every step, computed here by hand without a cache
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(10):
            ids = torch.cat([ids, model(ids).logits[:, -1:].argmax(-1)], dim=1)
    assert first == tok.decode(ids[0, start:], skip_special_tokens=True)


def test_sampling_depends_on_the_seed_and_repeats_with_it(model, tok):
    hot = Sampling(temperature=1.0, max_new_tokens=16)
    kw = hot.generate_kwargs()
    assert kw["do_sample"] is True and kw["temperature"] == 1.0
    runs = []
    for seed in (1, 2, 1):
        torch.manual_seed(seed)
        runs.append(continue_text(model, tok, "3 plus 4", hot))
    assert runs[0] == runs[2] and runs[0] != runs[1]
    torch.manual_seed(0)
    assert len(set(sample_texts(model, tok, "3 plus 4", hot, n=6))) > 1
    assert len(set(sample_texts(model, tok, "3 plus 4", Sampling(max_new_tokens=16), n=3))) == 1


def test_raw_continuation_returns_only_the_new_text(model, tok):
    prompt = "The capital of Vomia is Bel. The capital of"
    out = continue_text(model, tok, prompt, Sampling(max_new_tokens=12))
    want = new_ids(model, tok, prompt, max_new_tokens=12, do_sample=False)
    assert len(want) == 12
    assert out == tok.decode(want, skip_special_tokens=True)
    assert out and prompt not in out


# ---- multi-turn chat -------------------------------------------------------------------------------


def test_chat_sees_the_whole_history_through_the_template(model, tok, monkeypatch):
    seen = []
    generate = model.generate

    def spy(**kwargs):
        seen.append(tok.decode(kwargs["input_ids"][0]))
        return generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    reply = chat(model, tok, HISTORY, Sampling(max_new_tokens=8))
    (prompt,) = seen
    assert prompt == tok.apply_chat_template(HISTORY, tokenize=False, add_generation_prompt=True)
    positions = [prompt.index(m["content"]) for m in HISTORY]
    assert positions == sorted(positions)  # every turn, in order
    assert prompt.endswith("<|im_start|>assistant\n") and prompt.count("<|im_start|>") == 5
    assert reply == continue_text(model, tok, chat_prompt(tok, HISTORY), Sampling(max_new_tokens=8))


def test_trim_history_keeps_the_system_message_and_drops_the_oldest_turns(tok):
    long = HISTORY[:1] + [{"role": "user", "content": f"question {i} " * 3} for i in range(8)]
    kept = trim_history(tok, long, max_tokens=80)
    assert kept[0] == long[0] and kept[-1] == long[-1] and 2 <= len(kept) < len(long)
    assert len(tok(chat_prompt(tok, kept))["input_ids"]) <= 80
    assert trim_history(tok, HISTORY, max_tokens=10_000) == HISTORY


# ---- streaming and stopping --------------------------------------------------------------------


# The random model writes random bytes: after the zh prompt they never form a printable piece
# before the end, so only the en prompt is expected to stream in several pieces.
@pytest.mark.parametrize(
    ("prompt", "several"), [("The capital of Vomia is", True), ("沃米亚的首都是", False)]
)
def test_streamed_pieces_add_up_to_the_plain_greedy_reply(model, tok, prompt, several):
    pieces = list(stream_text(model, tok, prompt, Sampling(max_new_tokens=24)))
    assert len(pieces) > 1 if several else pieces
    assert "".join(pieces) == continue_text(model, tok, prompt, Sampling(max_new_tokens=24))
    chat_pieces = list(stream_chat(model, tok, HISTORY, Sampling(max_new_tokens=24)))
    assert "".join(chat_pieces) == chat(model, tok, HISTORY, Sampling(max_new_tokens=24))


def test_a_set_stop_event_ends_generation_after_one_token(model, tok):
    stop = threading.Event()
    stop.set()
    prompt = "The capital of Vomia is"
    out = continue_text(model, tok, prompt, Sampling(max_new_tokens=30), stop_event=stop)
    assert out == continue_text(model, tok, prompt, Sampling(max_new_tokens=1))


def test_stop_event_stops_a_stream_midway(model, tok, monkeypatch):
    counter = CountedForward(model, monkeypatch, delay=0.02)  # 100 tokens would take >= 2 s
    stop = threading.Event()
    pieces = []
    for piece in stream_text(model, tok, "3 plus 4", Sampling(max_new_tokens=100), stop_event=stop):
        pieces.append(piece)
        stop.set()
    assert pieces and counter.calls < 50, counter.calls


def test_leaving_a_stream_early_stops_the_generating_thread(model, tok, monkeypatch):
    counter = CountedForward(model, monkeypatch, delay=0.02)
    stream = stream_text(model, tok, "3 plus 4", Sampling(max_new_tokens=100))
    next(stream)
    stream.close()  # joins the thread, which must have stopped well before 100 tokens
    assert counter.calls < 50, counter.calls


def test_an_outcome_says_how_a_streamed_reply_ended(model, tok, monkeypatch):
    prompt = "The capital of Vomia is"
    prompt_tokens = len(tok(prompt, add_special_tokens=False)["input_ids"])
    done = Outcome()
    text = "".join(stream_text(model, tok, prompt, Sampling(max_new_tokens=7), outcome=done))
    assert text == continue_text(model, tok, prompt, Sampling(max_new_tokens=7))
    assert (done.prompt_tokens, done.completion_tokens, done.finish_reason) == (prompt_tokens, 7, "length")
    # All logits 0: greedy picks token 0, <|endoftext|>, a stop token, first.
    mute = small_chat_model(tok)
    with torch.no_grad():
        mute.model.norm.weight.zero_()
    closed = Outcome()
    assert list(stream_text(mute, tok, prompt, Sampling(max_new_tokens=7), outcome=closed)) == []
    assert (closed.completion_tokens, closed.finish_reason) == (1, "stop")
    CountedForward(model, monkeypatch, delay=0.02)
    left = Outcome()
    stream = stream_text(model, tok, prompt, Sampling(max_new_tokens=100), outcome=left)
    next(stream)
    stream.close()
    assert left.finish_reason == "interrupted" and 0 < left.completion_tokens < 50, left


def test_an_error_in_the_generating_thread_reaches_the_reader(model, tok):
    with pytest.raises(ValueError):
        list(stream_text(model, tok, "3 plus 4", Sampling(temperature=1.0, top_p=-1.0)))


# ---- stages by name ------------------------------------------------------------------------------


def test_missing_stage_names_its_notebook_in_one_line():
    nowhere = dataclasses.replace(profiles.TINY, name="no-such-profile-for-tests")
    with pytest.raises(StageMissing) as err:
        load_stage(nowhere, "dpo")
    assert "notebooks/05_dpo.ipynb" in str(err.value) and "\n" not in str(err.value)
    assert err.value._render_traceback_() == [f"StageMissing: {err.value}"]
    with pytest.raises(ValueError, match="unknown stage"):
        load_stage(nowhere, "rlhf")
    assert latest_stage(nowhere) is None


def test_load_stage_and_latest_stage(model, tok, tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "ROOT", tmp_path)
    for stage in ("pretrain", "sft"):
        model.save_pretrained(profiles.TINY.stage_dir(stage))
        tok.save_pretrained(profiles.TINY.stage_dir(stage))
    assert latest_stage(profiles.TINY) == "sft"
    loaded, loaded_tok = load_stage(profiles.TINY, "sft")
    prompt = "The capital of Vomia is"
    assert continue_text(loaded, loaded_tok, prompt) == continue_text(model, tok, prompt)
    with pytest.raises(StageMissing, match="06_grpo.ipynb"):
        load_stage(profiles.TINY, "grpo")


# ---- the chat box --------------------------------------------------------------------------------


def test_chat_box_plain_text_conversation(model, tok, capsys):
    import ipywidgets

    from minimind_lib.chat_widget import ChatBox

    box = ChatBox(
        lambda stage: (model, tok),
        stages=["pretrain", "sft"],
        stage="sft",
        sampling=Sampling(max_new_tokens=8),
    )
    assert isinstance(box.widget, ipywidgets.Widget)
    replies = box.run_script(["What is 3 plus 4?", "And 5 plus 6?"])
    out = capsys.readouterr().out
    assert "user (sft): What is 3 plus 4?" in out and "user (sft): And 5 plus 6?" in out
    assert [m["role"] for m in box.messages] == ["user", "assistant"] * 2
    # the second reply answered the whole history, not just the last question
    assert replies[1] == chat(model, tok, box.messages[:3], Sampling(max_new_tokens=8))
    assert "And 5 plus 6?" in box.history.value
    box.stop_button.click()
    assert box.stop_event.is_set()
    # Send from the widget: the reply is generated in a background thread
    box.clear()
    box.text.value = "What is 3 plus 4?"
    box.send_button.click()
    deadline = time.monotonic() + 30
    while not (len(box.messages) == 2 and box.messages[1]["content"]) or box._busy.locked():
        assert time.monotonic() < deadline, box.messages
        time.sleep(0.05)
    assert box.text.value == "" and box.messages[1]["content"] == replies[0]
    box.stage.value = "pretrain"  # switching stage starts a new conversation
    assert box.messages == []
    assert box.send("The capital of", echo=False) == continue_text(
        model, tok, "The capital of", Sampling(max_new_tokens=8)
    )


# ---- the report card -----------------------------------------------------------------------------

def sample_report() -> dict:
    """A report card as the notebooks write it, probes measured on 100 items (or documents)."""
    from minimind_lib.evals import measured
    from minimind_lib.stats import Score

    def rate(right: int, n: int = 100) -> Score:
        return Score.of([1] * right + [0] * (n - right))

    loss = lambda per_doc: Score.of([per_doc] * 100, den=[1.0] * 99 + [1.1])  # noqa: E731
    return {
        "pretrain": {"metrics": {"heldout_loss": measured(loss(6.9), loss(0.6)),
                                 "fact_completion": measured(rate(0), rate(90))}, "facts": {}},
        "sft": {"metrics": {"fact_qa_accuracy": measured(rate(0), rate(50))}, "facts": {}},
        "dpo": {"metrics": {"preference_accuracy": measured(rate(50), rate(80))},
                "guards": {"fact_qa_accuracy": measured(rate(50), rate(45))}, "facts": {}},
        "grpo": {"metrics": {"sampled_accuracy": measured(rate(20), rate(19))},
                 "guards": {"greedy_accuracy": measured(rate(20), rate(15))}, "facts": {}},
    }


def test_report_card_verdicts_know_directions_and_guards(tmp_path):
    from minimind_lib.evals import ReportCard, gain, lower_is_better

    assert lower_is_better("heldout_loss") and lower_is_better("bits_per_byte")
    assert not lower_is_better("fact_qa_accuracy")
    assert gain("heldout_loss", 6.9, 0.6) == pytest.approx(6.3) and gain("x_accuracy", 0.5, 0.4) < 0
    path = tmp_path / "report.json"
    path.write_text(json.dumps(sample_report()))
    judged = {(v["stage"], v["metric"]): v for v in ReportCard(path).verdicts(guard_margin=0.15)}
    assert judged["pretrain", "heldout_loss"]["ok"]  # fell: better
    assert (
        judged["dpo", "fact_qa_accuracy"]["role"] == "guard"
        and judged["dpo", "fact_qa_accuracy"]["ok"]
    )
    assert not judged["grpo", "sampled_accuracy"]["ok"]  # a target that fell
    assert judged["grpo", "greedy_accuracy"]["ok"]  # a guard whose whole interval is within its margin
    assert not ReportCard(path).verdicts(guard_margin=0.05)[-1]["ok"]


def test_report_card_figure_builds_from_a_report_json(tmp_path):
    from matplotlib.container import ErrorbarContainer

    from minimind_lib.plots import WORSE, report_card_figure

    path = tmp_path / "report.json"
    path.write_text(json.dumps(sample_report()))
    fig = report_card_figure(path)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [
        "预训练 · pretrain",
        "监督微调 · sft",
        "直接偏好优化 · dpo",
        "组相对策略优化 · grpo",
    ]
    assert [len(ax.patches) for ax in axes] == [4, 2, 4, 4]  # a before and an after bar per probe
    for ax, probes in zip(axes, [2, 1, 2, 2], strict=True):  # each bar with its 95% interval
        intervals = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert [len(c.lines[2][0].get_segments()) for c in intervals] == [probes, probes]
    labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert labels == ["heldout loss ↓\nn=100", "fact completion\nn=100"]
    assert "(护栏指标 · guard)" in axes[3].get_xticklabels()[1].get_text()
    sampled_after = axes[3].patches[2]  # bars: two before, then two after
    assert matplotlib.colors.to_hex(sampled_after.get_facecolor()) == WORSE
    three = {k: v for k, v in sample_report().items() if k != "grpo"}
    path.write_text(json.dumps(three))
    titles = [ax.get_title() for ax in report_card_figure(path).axes]
    assert titles == ["预训练 · pretrain", "监督微调 · sft", "直接偏好优化 · dpo"]
    with pytest.raises(ValueError, match="no stages"):
        report_card_figure(tmp_path / "empty.json")
