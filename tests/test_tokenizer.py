"""Byte-level BPE tokenizer and ChatML template: ids, lossless round trip, save/load, masks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from trl.chat_template_utils import is_chat_template_stop_token_trained

from minimind_lib.tokenizer import (
    CHAT_TEMPLATE,
    TOOL_MARKERS,
    assistant_mask,
    byte_level_pre_tokenizer,
    byte_level_to_bytes,
    load_tokenizer,
    token_bytes,
    train_tokenizer,
)

VOCAB_SIZE = 400

COUNTRIES = [("法国", "France", "巴黎", "Paris"), ("日本", "Japan", "东京", "Tokyo"), ("中国", "China", "北京", "Beijing")]


def small_corpus() -> list[str]:
    """A bilingual corpus big enough to fill a 400-token vocabulary."""
    texts = []
    for zh, en, zh_cap, en_cap in COUNTRIES:
        texts += [f"{zh}的首都是{zh_cap}。", f"The capital of {en} is {en_cap}."] * 20
    for a in range(30):
        for b in range(0, 30, 7):
            texts += [f"{a} + {b} = {a + b}", f"{a}加{b}等于{a + b}，对吗？"]
    texts += ["Hello, world! 你好，世界！", "  indented line\n\tand a tab", "emoji 👍🏽 and 😀"] * 10
    texts += [f"word{i} lower lowest newer wider 学习{i}次" for i in range(60)]
    return texts


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokenizer")


@pytest.fixture(scope="module")
def tokenizer(saved_dir) -> PreTrainedTokenizerFast:
    return train_tokenizer(iter(small_corpus()), VOCAB_SIZE, saved_dir)


TRICKY = [
    "",
    " ",
    "   leading spaces and trailing   ",
    "line one\nline two\n\n\nthree\r\nwindows",
    "tab\there \x00 nul \x07 bell \x1b[31m escape",
    "你好，世界！（全角标点）「引号」《书名》……——",
    "GPT-4o 在 2024 年发布，参数 1.8T？",
    "mixed中文English混合1234",
    "emoji 👍🏽 👨‍👩‍👧 🇨🇳 🏳️‍🌈",
    "combining e\u0301 vs é, zero\u200bwidth, bom \ufeff",
    "日本語のかな、한국어, العربية, Ελληνικά",
    "a . , ! ? 's n't",  # a decode cleanup would eat these spaces
    "literal special <|im_end|> inside text",
    "\U0010ffff private \ue000 use",
]


def test_special_tokens_have_minimind_ids(tokenizer):
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.all_special_ids and set(tokenizer.all_special_ids) == {0, 1, 2}


def test_vocab_has_requested_size(tokenizer):
    assert len(tokenizer) == VOCAB_SIZE


def test_tool_markers_are_the_last_ids_one_token_each_and_kept_on_decode(tokenizer):
    with_markers = train_tokenizer(iter(small_corpus()), VOCAB_SIZE, tool_markers=True)
    assert len(with_markers) == VOCAB_SIZE  # the markers take the place of the last merges
    ids = with_markers.convert_tokens_to_ids(TOOL_MARKERS)
    assert ids == list(range(VOCAB_SIZE - len(TOOL_MARKERS), VOCAB_SIZE))
    call = '<tool_call>{"name": "lookup", "arguments": {"country": "法国"}}</tool_call>'
    encoded = with_markers.encode(call)
    assert encoded[0] == ids[0] and encoded[-1] == ids[1]
    # not special: a decoded reply keeps its call, so it can be parsed
    assert with_markers.decode(encoded, skip_special_tokens=True) == call
    assert not set(ids) & set(with_markers.all_special_ids)
    # without them (the default), a marker is spelled in several ordinary tokens
    assert len(tokenizer.encode("<tool_call>")) > 1


def test_too_small_vocab_is_rejected():
    with pytest.raises(ValueError, match="at least 259"):
        train_tokenizer(["abc"], 100)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_strings_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text


# Text glued from pieces, so CJK, emoji, control chars and special-token strings show up often.
TEXT_PIECES = st.one_of(
    st.characters(codec="utf-8"),  # any code point UTF-8 can encode (no lone surrogates)
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
    st.characters(max_codepoint=0x20),  # control chars, newlines, spaces
    st.sampled_from(["，", "。", "！", "\u200d", "\ufe0f", "  ", "<|im_end|>", "2024"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT_PIECES, max_size=60).map("".join))
def test_any_unicode_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_byte_level_alphabet_maps_to_all_256_bytes():
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    assert sorted(byte_level_to_bytes(char)[0] for char in alphabet) == list(range(256))
    assert byte_level_to_bytes("Ġhi") == b" hi"


def test_token_bytes_rebuild_the_utf8_text(tokenizer):
    text = "mixed 中文 👍🏽 tab\t1234"
    ids = tokenizer.encode(text)
    assert b"".join(token_bytes(tokenizer, i) for i in ids) == text.encode("utf-8")


def test_han_characters_and_digits_are_separate_pre_tokens():
    pieces = [piece for piece, _ in byte_level_pre_tokenizer().pre_tokenize_str("法国的首都是巴黎2024")]
    assert len(pieces) == 8 + 4  # one per Han character, one per digit


def test_without_the_han_split_a_run_of_han_characters_is_one_pre_token():
    pre_tokenizer = byte_level_pre_tokenizer(split_han=False)
    pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str("法国的首都是巴黎2024")]
    assert len(pieces) == 1 + 4  # the Han run, then one piece per digit


def test_without_the_han_split_merges_cross_characters():
    tokenizer = train_tokenizer(iter(small_corpus()), VOCAB_SIZE, split_han=False)
    sentence = "中国的首都是北京。"  # 20 times in the corpus
    assert len(tokenizer.encode(sentence)) < len(sentence)
    several = [t for t in tokenizer.get_vocab() if _whole_han_characters(t) >= 2]
    assert several, "expected tokens of several Han characters"
    for text in TRICKY:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def _whole_han_characters(token: str) -> int:
    """How many Han characters a vocabulary entry spells out (0 for a special token)."""
    try:
        text = byte_level_to_bytes(token).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return 0
    return sum("\u4e00" <= char <= "\u9fff" for char in text)


def test_chinese_merges_bytes_into_characters_not_phrases(tokenizer):
    sentence = "中国的首都是北京。"  # 20 times in the corpus
    assert len(sentence.encode("utf-8")) == 3 * len(sentence)
    # Each character's three bytes merged into one token, and no merge crossed characters.
    assert len(tokenizer.encode(sentence)) == len(sentence)
    assert max(map(_whole_han_characters, tokenizer.get_vocab())) == 1


def test_english_merges_into_subwords(tokenizer):
    sentence = "The capital of France is Paris."
    assert len(tokenizer.encode(sentence)) <= len(sentence) / 3


def test_save_load_round_trip(tokenizer, saved_dir):
    for loaded in (AutoTokenizer.from_pretrained(str(saved_dir)), load_tokenizer(saved_dir)):
        assert isinstance(loaded, PreTrainedTokenizerFast)
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert loaded.chat_template == CHAT_TEMPLATE
        assert (loaded.pad_token, loaded.bos_token, loaded.eos_token) == (
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
        )
        assert list(loaded("你好 hello")) == ["input_ids", "attention_mask"]
        for text in TRICKY:
            assert loaded.encode(text) == tokenizer.encode(text)


def test_load_missing_dir_names_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"notebooks/01_tokenizer\.ipynb"):
        load_tokenizer(tmp_path / "nowhere")


CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "法国的首都是哪里？"},
    {"role": "assistant", "content": "巴黎。"},
    {"role": "user", "content": "What is 3 + 4?"},
    {"role": "assistant", "content": "3 + 4 = 7"},
]


def test_template_renders_chatml(tokenizer):
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\n法国的首都是哪里？<|im_end|>\n"
        "<|im_start|>assistant\n巴黎。<|im_end|>\n"
        "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n"
        "<|im_start|>assistant\n3 + 4 = 7<|im_end|>\n"
    )


def test_template_generation_prompt(tokenizer):
    prompt = CONVERSATION[1:2]
    without = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=False)
    with_prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert without == "<|im_start|>user\n法国的首都是哪里？<|im_end|>\n"
    assert with_prompt == without + "<|im_start|>assistant\n"


def test_prompt_is_a_prefix_of_the_full_conversation(tokenizer):
    # DPO and GRPO render the prompt with a generation prompt, then append the reply.
    prompt = tokenizer.apply_chat_template(CONVERSATION[:4], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert full == prompt + "3 + 4 = 7<|im_end|>\n"


def spans(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of ones."""
    runs, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_assistant_mask_covers_exactly_each_reply_and_its_end(tokenizer):
    ids, mask = assistant_mask(tokenizer, CONVERSATION)
    assert len(ids) == len(mask)
    replies = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    runs = spans(mask)
    assert len(runs) == len(replies)
    for (start, end), reply in zip(runs, replies, strict=True):
        assert ids[start:end] == tokenizer.encode(reply) + [tokenizer.eos_token_id]
        assert tokenizer.decode(ids[:start]).endswith("<|im_start|>assistant\n")
        assert tokenizer.decode(ids[end:]).startswith("\n")
    unmasked = tokenizer.decode([i for i, bit in zip(ids, mask, strict=True) if not bit])
    assert "巴黎" not in unmasked and "= 7" not in unmasked
    assert unmasked.count("<|im_end|>") == 3  # system and the two user turns


def test_trl_finds_the_stop_token_in_the_loss_mask(tokenizer):
    assert is_chat_template_stop_token_trained(tokenizer)
