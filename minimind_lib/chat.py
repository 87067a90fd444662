"""Generation helpers shared by the probes and the chat notebook."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .tokenizer import ENDOFTEXT


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
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            # Stop at the end of a reply (<|im_end|>) or of a document (<|endoftext|>).
            stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(ENDOFTEXT)]
            kwargs = dict(do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=stop)
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
    return [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]


def reply_text(raw: str, tokenizer) -> tuple[str, bool]:
    """(reply without the end marker, whether the reply was closed by exactly one end marker)."""
    eos = tokenizer.eos_token
    if eos in raw:
        head, tail = raw.split(eos, 1)
        return head.strip(), tail.strip() == ""
    return raw.strip(), False
