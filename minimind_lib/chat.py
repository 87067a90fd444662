"""Generation helpers: the probes' batched greedy decoding, and chatting with any stage.

- `generate_batch`, `chat_prompts`, `reply_text`: what the probes (evals.py) use.
- `load_stage`: a stage's checkpoint by name (pretrain, sft, dpo, grpo).
- `Sampling`: the sampling controls in one place; temperature 0 means greedy.
- `continue_text` (raw continuation, how a pretrained model is used) and `chat` (a
  multi-turn history rendered by the chat template), and their streaming twins
  `stream_text` / `stream_chat`, which yield text pieces as transformers'
  `TextIteratorStreamer` decodes them while `generate` runs in a thread; an `Outcome`
  passed to them learns how the reply ended (a stop token, max_new_tokens, interrupted).
- `StopOnEvent`: a stopping criterion driven by a `threading.Event` (the chat box's Stop).
The ipywidgets chat box is in chat_widget.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from .tokenizer import ENDOFTEXT

# The notebook that writes each stage's checkpoint (named when the checkpoint is missing).
STAGE_NOTEBOOKS = {
    "pretrain": "03_pretrain.ipynb",
    "sft": "04_sft.ipynb",
    "dpo": "05_dpo.ipynb",
    "grpo": "06_grpo.ipynb",
}


# ---------------------------------------------------------------------------------------------
# Batched greedy decoding (the probes)
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def generate_batch(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    **generate_kwargs,
) -> list[str]:
    """Continue each raw prompt string; returns only the new text (special tokens kept).

    Prompts are left-padded into batches, the layout `generate` needs so every row's next
    token lands in the same column. Greedy unless sampling arguments are passed.
    """
    model.eval()
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(
                device
            )
            # Stop at the end of a reply (<|im_end|>) or of a document (<|endoftext|>).
            kwargs = dict(
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_token_ids(tokenizer),
            )
            kwargs.update(generate_kwargs)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            outputs += tokenizer.batch_decode(new, skip_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return [strip_padding(text, tokenizer) for text in outputs]


def strip_padding(text: str, tokenizer) -> str:
    """Drop the pad tokens `generate` appends after a row has finished."""
    pad = tokenizer.pad_token
    return text.replace(pad, "") if pad and pad != tokenizer.eos_token else text


def chat_prompts(tokenizer, conversations: Sequence[list[dict]]) -> list[str]:
    """Each conversation rendered with the chat template, ready for the assistant's reply."""
    return [chat_prompt(tokenizer, c) for c in conversations]


def reply_text(raw: str, tokenizer) -> tuple[str, bool]:
    """(reply without the end marker, whether the reply was closed by exactly one end marker)."""
    eos = tokenizer.eos_token
    if eos in raw:
        head, tail = raw.split(eos, 1)
        return head.strip(), tail.strip() == ""
    return raw.strip(), False


# ---------------------------------------------------------------------------------------------
# Checkpoints by stage
# ---------------------------------------------------------------------------------------------
def load_stage(profile, stage: str):
    """(model, tokenizer) of a stage's final checkpoint; a one-line error naming the
    notebook to run when it has not been written yet."""
    from .model import MiniMindForCausalLM
    from .runtime import require
    from .tokenizer import load_tokenizer

    if stage not in STAGE_NOTEBOOKS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {list(STAGE_NOTEBOOKS)}")
    path = require(profile.stage_dir(stage) / "model.safetensors", STAGE_NOTEBOOKS[stage]).parent
    model = MiniMindForCausalLM.from_pretrained(path).eval()
    return model, load_tokenizer(path)


def latest_stage(profile) -> str | None:
    """The last stage whose checkpoint exists (grpo > dpo > sft > pretrain), None if none."""
    done = [s for s in STAGE_NOTEBOOKS if (profile.stage_dir(s) / "model.safetensors").exists()]
    return done[-1] if done else None


# ---------------------------------------------------------------------------------------------
# Sampling controls and the stop switch
# ---------------------------------------------------------------------------------------------
@dataclass
class Sampling:
    """How the next token is picked. temperature 0 = greedy (the other three filters then
    do not matter); top_k 0 and top_p 1 switch those filters off; repetition_penalty > 1
    makes every token already in the text less likely (1 = off)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 64

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def generate_kwargs(self) -> dict:
        """The matching arguments of `model.generate`."""
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.greedy:
            return {**kwargs, "do_sample": False}
        return {
            **kwargs,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }

    def as_dict(self) -> dict:
        return asdict(self)


class StopOnEvent(StoppingCriteria):
    """Stop generating as soon as `event` is set (checked after every new token)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


def stop_token_ids(tokenizer) -> list[int]:
    """The end of a reply (`<|im_end|>`) and the end of a document (`<|endoftext|>`)."""
    return [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(ENDOFTEXT)]


def chat_prompt(tokenizer, messages: Sequence[dict]) -> str:
    """The whole history rendered by the chat template, ending where the assistant speaks."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


# ---------------------------------------------------------------------------------------------
# One prompt, one reply: plain and streamed
# ---------------------------------------------------------------------------------------------
def _generate_args(model, tokenizer, prompt: str, sampling: Sampling, stop_event) -> dict:
    device = next(model.parameters()).device
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    args = dict(
        **enc,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_token_ids(tokenizer),
        **sampling.generate_kwargs(),
    )
    if stop_event is not None:
        args["stopping_criteria"] = StoppingCriteriaList([StopOnEvent(stop_event)])
    return args


@torch.no_grad()
def continue_text(
    model,
    tokenizer,
    prompt: str,
    sampling: Sampling | None = None,
    stop_event: threading.Event | None = None,
) -> str:
    """The text a model writes after a raw prompt: only the new text, without the stop token.

    This is how a pretrained model is used: it continues a document. Sampling is seeded by
    torch's global generator (`transformers.set_seed`)."""
    model.eval()
    args = _generate_args(model, tokenizer, prompt, sampling or Sampling(), stop_event)
    out = model.generate(**args)
    return tokenizer.decode(out[0, args["input_ids"].shape[1] :], skip_special_tokens=True)


def chat(
    model,
    tokenizer,
    messages: Sequence[dict],
    sampling: Sampling | None = None,
    stop_event: threading.Event | None = None,
) -> str:
    """The assistant's next reply to a whole conversation (a list of {"role", "content"})."""
    return continue_text(model, tokenizer, chat_prompt(tokenizer, messages), sampling, stop_event)


@dataclass
class Outcome:
    """How a streamed reply ended, filled in by `stream_text(..., outcome=...)` once its
    generation is over (the stream exhausted, or closed by the reader).

    finish_reason: "stop" (a stop token closed the reply), "length" (max_new_tokens were
    written), "interrupted" (stop_event was set, or the reader left before the end).
    completion_tokens counts the new tokens, a closing stop token included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


def stream_text(
    model,
    tokenizer,
    prompt: str,
    sampling: Sampling | None = None,
    stop_event: threading.Event | None = None,
    outcome: Outcome | None = None,
) -> Iterator[str]:
    """Like `continue_text`, but yields the text piece by piece while it is generated.

    `generate` runs in a background thread and pushes each new token to a
    `TextIteratorStreamer`, which decodes them and hands out text once it is printable
    (a whole word, a CJK character, a complete UTF-8 sequence). The pieces add up to
    exactly what `continue_text` returns. Setting `stop_event` ends the reply early.
    Closing the iterator early stops the generation too. `outcome`, if given, is filled in.
    """
    model.eval()
    sampling = sampling or Sampling()
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    args = _generate_args(model, tokenizer, prompt, sampling, stop_event)
    reader_left = threading.Event()  # set when the caller stops reading before the end
    args.setdefault("stopping_criteria", StoppingCriteriaList()).append(StopOnEvent(reader_left))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                out = model.generate(**args, streamer=streamer)
            if outcome is not None:
                _record(outcome, out[0].tolist(), args["input_ids"].shape[1], sampling, tokenizer)
        except BaseException as err:  # hand it to the reading thread instead of hanging it
            errors.append(err)
            streamer.text_queue.put(streamer.stop_signal)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        for piece in streamer:
            if piece:
                yield piece
    finally:
        reader_left.set()  # a no-op when generation has already ended
        thread.join()
    if errors:
        raise errors[0]


def _record(outcome: Outcome, ids: list[int], prompt_tokens: int, sampling: Sampling, tokenizer):
    new = ids[prompt_tokens:]
    outcome.prompt_tokens, outcome.completion_tokens = prompt_tokens, len(new)
    if new and new[-1] in stop_token_ids(tokenizer):
        outcome.finish_reason = "stop"
    elif len(new) >= sampling.max_new_tokens:
        outcome.finish_reason = "length"
    else:
        outcome.finish_reason = "interrupted"


def stream_chat(
    model,
    tokenizer,
    messages: Sequence[dict],
    sampling: Sampling | None = None,
    stop_event: threading.Event | None = None,
    outcome: Outcome | None = None,
) -> Iterator[str]:
    """Like `chat`, piece by piece."""
    prompt = chat_prompt(tokenizer, messages)
    return stream_text(model, tokenizer, prompt, sampling, stop_event, outcome)


@torch.no_grad()
def sample_texts(model, tokenizer, prompt: str, sampling: Sampling, n: int) -> list[str]:
    """n continuations of one prompt, sampled in one batch (`num_return_sequences`).
    Greedy decoding has only one: it is repeated n times."""
    if sampling.greedy:
        return [continue_text(model, tokenizer, prompt, sampling)] * n
    model.eval()
    args = _generate_args(model, tokenizer, prompt, sampling, None)
    out = model.generate(**args, num_return_sequences=n)
    return tokenizer.batch_decode(out[:, args["input_ids"].shape[1] :], skip_special_tokens=True)


def trim_history(tokenizer, messages: Sequence[dict], max_tokens: int) -> list[dict]:
    """Drop the oldest turns (a system message stays) until the rendered prompt fits."""
    messages = list(messages)
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    while (
        len(turns) > 1
        and len(tokenizer(chat_prompt(tokenizer, system + turns))["input_ids"]) > max_tokens
    ):
        turns = turns[1:]
    return system + turns
