"""The OpenAI-compatible server (minimind_lib.serve), run for real on a free local port and
driven by the official `openai` client: the model list, greedy replies equal to `chat.chat`,
streaming, finish reasons, stop strings, seeds, errors in OpenAI's shape, a client leaving a
stream, and the command line's error for a missing checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import httpx
import openai
import pytest
import torch
from conftest import HISTORY, CountedForward, small_chat_model, small_tokenizer
from openai import OpenAI

from minimind_lib import profiles, serve
from minimind_lib.chat import Sampling, chat, chat_prompt
from minimind_lib.runtime import StageMissing

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """The server on a checkpoint saved to a tmp dir named tiny-chat, in a background thread."""
    tok = small_tokenizer()
    # varied text, and greedy never stops early: every reply runs to max_tokens
    model = small_chat_model(tok, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("checkpoints") / "tiny-chat"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    served, served_tok, _ = serve.load_checkpoint(path)
    with serve.background_server(served, served_tok, path.name) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=60)
        yield SimpleNamespace(model=model, tok=tok, served=served, url=url, client=client, name=path.name)


def ask(srv, stream=False, **kw):
    args = dict(model=srv.name, messages=HISTORY, temperature=0, max_tokens=12)
    return srv.client.chat.completions.create(**{**args, **kw}, stream=stream)


def streamed(srv, **kw) -> tuple[str, list]:
    chunks = list(ask(srv, stream=True, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


# ---- the model list and greedy replies ---------------------------------------------------------


def test_models_lists_the_one_model_named_after_its_directory(srv):
    assert [m.id for m in srv.client.models.list().data] == ["tiny-chat"]
    assert srv.client.models.retrieve("tiny-chat").id == "tiny-chat"
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        srv.client.models.retrieve("no-such-model")


def test_a_greedy_completion_is_our_own_chat_reply(srv):
    reply = ask(srv, max_tokens=12)
    (choice,) = reply.choices
    want = chat(srv.model, srv.tok, HISTORY, Sampling(max_new_tokens=12))
    assert want and choice.message.content == want and choice.message.role == "assistant"
    assert choice.finish_reason == "length"  # this model never closes a reply by itself
    prompt_tokens = len(srv.tok(chat_prompt(srv.tok, HISTORY), add_special_tokens=False)["input_ids"])
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt_tokens, 12)
    assert reply.usage.total_tokens == prompt_tokens + 12
    assert reply.model == "tiny-chat" and reply.object == "chat.completion"


def test_the_streamed_deltas_add_up_to_the_plain_reply(srv):
    text, chunks = streamed(srv, max_tokens=16)
    assert text == ask(srv, max_tokens=16).choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(bool(c.choices[0].delta.content) for c in chunks) > 1  # really piece by piece
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"


def test_the_stream_is_server_sent_events_ending_in_done(srv):
    body = dict(model=srv.name, messages=HISTORY, max_tokens=5, temperature=0, stream=True,
                stream_options={"include_usage": True})
    with httpx.stream("POST", f"{srv.url}/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: ") for e in events[:-1])
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


# ---- finish reasons, stop strings, seeds ----------------------------------------------------------


def test_max_tokens_reached_is_finish_reason_length(srv):
    reply = ask(srv, max_tokens=3)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3
    assert reply.choices[0].message.content == chat(srv.model, srv.tok, HISTORY, Sampling(max_new_tokens=3))


def test_a_stop_string_cuts_the_text_before_it(srv):
    full = ask(srv, max_tokens=24).choices[0].message.content
    middle = len(full) // 2
    stop = full[middle : middle + 2]
    want = full[: full.index(stop)]
    assert len(want) > 2 and len(want) < len(full), (full, stop)
    for stops in (stop, [stop], ["never in the text", stop]):
        reply = ask(srv, max_tokens=24, stop=stops)
        assert reply.choices[0].message.content == want and reply.choices[0].finish_reason == "stop"
        text, chunks = streamed(srv, max_tokens=24, stop=stops)
        assert text == want and chunks[-1].choices[0].finish_reason == "stop"
    untouched = ask(srv, max_tokens=24, stop=["never in the text"])
    assert untouched.choices[0].message.content == full
    assert untouched.choices[0].finish_reason == "length"


def test_a_seed_repeats_a_sampled_reply(srv):
    hot = dict(temperature=1.0, max_tokens=16)
    first, again, other = (ask(srv, seed=s, **hot).choices[0].message.content for s in (7, 7, 8))
    assert first == again and first != other


# ---- errors -------------------------------------------------------------------------------------

LONG = [{"role": "user", "content": "1 + 2 = 3, " * 100}]  # far more than the 256-token context


@pytest.mark.parametrize(
    ("request_args", "error", "word"),
    [
        ({"model": "no-such-model"}, openai.NotFoundError, "no-such-model"),
        ({"messages": []}, openai.BadRequestError, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, openai.BadRequestError, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, openai.BadRequestError, "messages.0.content"),
        ({"messages": [{"role": "user", "content": 5}]}, openai.BadRequestError, "content"),
        ({"temperature": -0.5}, openai.BadRequestError, "temperature"),
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
        ({"top_p": 0}, openai.BadRequestError, "top_p"),
        ({"n": 2}, openai.BadRequestError, "n=1"),
        ({"seed": 2**70}, openai.BadRequestError, "seed"),
        ({"messages": LONG}, openai.BadRequestError, "context"),
        ({"max_tokens": 200}, openai.BadRequestError, "context"),  # the prompt's 106 + 200 > 256
    ],
)
def test_a_bad_request_is_an_openai_error_naming_the_problem(srv, request_args, error, word):
    with pytest.raises(error) as err:
        ask(srv, **request_args)
    assert word in err.value.message
    assert set(err.value.body) == {"message", "type", "param", "code"}
    assert err.value.body["type"] == "invalid_request_error"


def test_a_body_that_is_not_json_is_a_400(srv):
    resp = httpx.post(f"{srv.url}/chat/completions", content=b"{not json", timeout=30,
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]["message"]
    assert httpx.get(f"{srv.url}/nowhere", timeout=30).json()["error"]["message"].endswith("Not Found")


def test_an_unexpected_failure_is_a_500_and_the_server_keeps_serving(srv, monkeypatch):
    with monkeypatch.context() as patch:

        def broken(*args, **kwargs):
            raise RuntimeError("the weights caught fire")

        patch.setattr(srv.served, "forward", broken)
        with pytest.raises(openai.InternalServerError, match="caught fire"):
            ask(srv)
        with pytest.raises(openai.APIError, match="caught fire"):
            streamed(srv)
    # after every bad request above, a good one is answered as before
    assert ask(srv, max_tokens=4).choices[0].message.content == chat(
        srv.model, srv.tok, HISTORY, Sampling(max_new_tokens=4)
    )


def test_a_client_leaving_a_stream_stops_the_generation(srv, monkeypatch):
    counter = CountedForward(srv.served, monkeypatch, delay=0.03)  # 140 tokens: at least 4 s
    body = dict(model=srv.name, messages=HISTORY, max_tokens=140, temperature=0, stream=True)
    with httpx.stream("POST", f"{srv.url}/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        text = next(json.loads(line[6:])["choices"][0]["delta"]["content"]
                    for line in resp.iter_lines() if '"content":' in line and '"role"' not in line)
    assert text and counter.calls < 50, counter.calls  # the stream was left early
    # The next request waits for the model's lock: the abandoned reply must have let go.
    assert ask(srv, max_tokens=2).usage.completion_tokens == 2
    assert counter.calls < 100, counter.calls


# ---- loading, and the command line ----------------------------------------------------------------


def test_a_stage_name_resolves_through_the_profile(srv, tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "ROOT", tmp_path)
    srv.model.save_pretrained(profiles.TINY.stage_dir("sft"))
    srv.tok.save_pretrained(profiles.TINY.stage_dir("sft"))
    _, _, path = serve.load_checkpoint("sft", "tiny")
    assert path == tmp_path / "out" / "tiny" / "sft"
    with pytest.raises(StageMissing, match="05_dpo.ipynb"):
        serve.load_checkpoint("dpo", "tiny")
    (tmp_path / "weights-only").mkdir()
    srv.model.save_pretrained(tmp_path / "weights-only")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        serve.load_checkpoint(tmp_path / "weights-only")


def test_the_command_line_names_a_missing_checkpoint_in_one_line():
    missing = "/nonexistent/checkpoint"
    run = subprocess.run([sys.executable, "-m", "minimind_lib.serve", missing],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert missing in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
