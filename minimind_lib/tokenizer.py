"""Byte-level BPE tokenizer and ChatML chat template, laid out as in MiniMind.

Special tokens `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` get ids 0, 1, 2. Byte-level
means every UTF-8 string encodes and decodes back exactly: there is no unknown token.

Roles of the special tokens (the same as MiniMind):
- eos = `<|im_end|>`: it closes every chat turn, so `generate` stops at the end of a reply.
- `<|endoftext|>` ends each pretraining document. Pretraining never shows `<|im_end|>`, so
  closing a reply with it is something SFT teaches, and a probe can measure.
- bos = `<|im_start|>`: it opens every chat turn.
- pad = `<|endoftext|>` too: it never appears inside a conversation, so padding can never be
  confused with a turn boundary.

`tool_markers=True` also gives the markers of MiniMind-3's tool calls and thinking
(`TOOL_MARKERS`) one token each, the last ids of the vocabulary. They are added tokens, never
split, but not special: decoding keeps them, so a reply's tool call survives
`skip_special_tokens=True` and can be parsed (as in Qwen's tokenizers).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .runtime import StageMissing

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]  # order = ids 0, 1, 2
TOOL_CALL, TOOL_CALL_END = "<tool_call>", "</tool_call>"
TOOL_MARKERS = [TOOL_CALL, TOOL_CALL_END, "<tool_response>", "</tool_response>", "<think>", "</think>"]

CHAT_TEMPLATE = (Path(__file__).with_name("chat_template.jinja")).read_text(encoding="utf-8")

TOKENIZER_NOTEBOOK = "notebooks/01_tokenizer.ipynb"


def byte_level_pre_tokenizer(split_han: bool = True) -> pre_tokenizers.PreTokenizer:
    """Cut text into the pieces BPE may merge within (merges never cross a piece boundary).

    The GPT-2 byte-level rule splits on spaces, so a Chinese sentence (no spaces) would be a
    single piece and BPE would learn whole phrases of the training text. Each Han character
    and each digit is isolated first; the byte-level step then maps bytes to printable chars.
    `split_han=False` keeps a run of Han characters whole, as MiniMind's own tokenizer does
    (the byte-level rule is its only pre-tokenizer), so merges may cross characters.
    """
    han = [pre_tokenizers.Split(Regex(r"\p{Han}"), behavior="isolated")] if split_han else []
    return pre_tokenizers.Sequence(
        [
            *han,
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def train_bpe(texts: Iterable[str], vocab_size: int, split_han: bool = True) -> Tokenizer:
    """Train a raw `tokenizers.Tokenizer` (no transformers wrapper); see `train_tokenizer`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = byte_level_pre_tokenizer(split_han)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # All 256 bytes are in the vocabulary from the start, seen in training or not.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def to_transformers(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """The transformers view of a trained tokenizer: special tokens and the chat template."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        chat_template=CHAT_TEMPLATE,
        # No token_type_ids: `generate` would pass them to a model that takes none.
        model_input_names=["input_ids", "attention_mask"],
        # Cleanup would turn "a ." into "a." on decode and break the exact round trip.
        clean_up_tokenization_spaces=False,
    )


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | Path | None = None,
    *,
    split_han: bool = True,
    tool_markers: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of `vocab_size` tokens on `texts`; save it to `out_dir` if given.

    `split_han=False` lets merges cross Han characters (see `byte_level_pre_tokenizer`);
    `tool_markers=True` spends the last `len(TOOL_MARKERS)` ids on those markers.
    """
    extra = TOOL_MARKERS if tool_markers else []
    min_size = len(SPECIAL_TOKENS) + 256 + len(extra)
    if vocab_size < min_size:
        raise ValueError(
            f"vocab_size must be at least {min_size} (special tokens, 256 bytes, markers)"
        )
    raw = train_bpe(texts, vocab_size - len(extra), split_han)
    raw.add_tokens([AddedToken(m, special=False, normalized=False) for m in extra])
    tokenizer = to_transformers(raw)
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `train_tokenizer`; say which notebook makes it when missing."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise StageMissing(
            f"No tokenizer found in {path}. Run {TOKENIZER_NOTEBOOK} first: it trains and saves it."
        )
    return AutoTokenizer.from_pretrained(str(path))


def assistant_mask(
    tokenizer: PreTrainedTokenizerFast, messages: list[dict[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids of a rendered conversation and a 0/1 mask: 1 where the assistant speaks.

    The mask covers each assistant reply and its `<|im_end|>`: the tokens SFT trains on.
    """
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(encoded["input_ids"]), list(encoded["assistant_masks"])


def _bytes_to_chars() -> list[str]:
    """GPT-2's byte -> printable char table: printable bytes map to themselves, others shift up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, shift = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + shift))
            shift += 1
    return chars


_BYTE_OF_CHAR = {char: byte for byte, char in enumerate(_bytes_to_chars())}


def byte_level_to_bytes(token: str) -> bytes:
    """The raw bytes behind a token as stored in the vocabulary ("Ġhi" -> b" hi")."""
    return bytes(_BYTE_OF_CHAR[char] for char in token)


def token_bytes(tokenizer: PreTrainedTokenizerFast, token_id: int) -> bytes:
    """The raw UTF-8 bytes a (non-special) token stands for; may be part of a character."""
    return byte_level_to_bytes(tokenizer.convert_ids_to_tokens(token_id))
