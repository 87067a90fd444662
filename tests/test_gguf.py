"""GGUF export, checked by llama.cpp itself (llama-cpp-python): the same token ids, the same
greedy tokens, a chat through the embedded template, and an ollama Modelfile that renders
the conversation as our chat template does."""

import ctypes
import re

import llama_cpp  # llama.cpp's Python bindings, built from source by the test extra
import pytest
import torch
from conftest import small_model

from minimind_lib.chat import Sampling, chat, stop_token_ids
from minimind_lib.export import export_gguf, main
from minimind_lib.export_gguf import (
    OLLAMA_TEMPLATE,
    could_join_a_han_character,
    gguf_chat_template,
    llama_cpp_greedy,
    pairs_from_halves,
    pretokenizer_mismatches,
    write_gguf,
)
from minimind_lib.model import apply_rope
from minimind_lib.tokenizer import TOOL_MARKERS, byte_level_to_bytes, train_tokenizer

torch.set_num_threads(1)

# Text the tokenizer learns from: both languages, digits, punctuation, a few other scripts.
CORPUS = [
    "The capital of Vomia is Bel. 沃米亚的首都是贝尔。 1 + 2 = 3, 12 + 30 = 42.",
    "Don't stop: it's 2026! 我们在 2026 年学习语言模型，好吗？",
    "— «quotes» and “curly” ones; tabs\tand\nnew lines.",
]
# Accented Latin and other scripts, whose merges can join the bytes of two characters.
MANY_SCRIPTS = ["café naïve résumé. 日本語のかな漢字混じり文。한국어 문장. Ελληνικά. Русский текст."]
# Strings whose token ids must be the same in llama.cpp: mixed scripts next to Han characters,
# digits, spaces, emoji, CJK Extension B, special tokens inside text.
TRICKY = [
    "你好world 2024年12月1日",
    "  two  spaces\tand a tab\n\nnew lines  ",
    "emoji 🙂👍🏽 and 𠀀𠀁 (CJK Extension B)",
    "漢字とかなの混在、カタカナ。한국어漢字 Ελληνικά漢字 Русский漢字",
    "digits 1234567890 ４２ ½ ²",
    "<|im_start|>user\n北京是中国的首都吗？<|im_end|>\n<|im_start|>assistant\n",
    "I'll say it's 'quoted' — isn't it?",
    "spaces before punctuation , . ! ? and n't 's kept as they are",
    "Ελληνικά Русский café",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS * 30, vocab_size=400)


@pytest.fixture(scope="module")
def checkpoint(tok, tmp_path_factory):
    """A small model with decisive logits (larger initial weights: few near-ties in greedy
    decoding), saved with its tokenizer."""
    model = small_model(vocab_size=len(tok), initializer_range=0.3, tie_word_embeddings=False)
    src = tmp_path_factory.mktemp("gguf") / "src"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    return model, src


@pytest.fixture(scope="module")
def gguf_files(checkpoint, tmp_path_factory):
    _, src = checkpoint
    out = tmp_path_factory.mktemp("files")
    return {t: export_gguf(src, out / f"m-{t}.gguf", t) for t in ("f32", "f16", "q8_0")}


def load_llama(path, **kw):
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False, seed=0, **kw)


# ---- pieces -----------------------------------------------------------------------------------
def test_adjacent_pairs_rotate_like_halves():
    """The reordered query/key rows under llama.cpp's rotation of adjacent pairs give the same
    scores as the original rows under transformers' rotation of halves."""
    heads, head_dim, hidden, T = 2, 8, 16, 5
    torch.manual_seed(0)
    wq, wk, x = torch.randn(heads * head_dim, hidden), torch.randn(heads * head_dim, hidden), torch.randn(T, hidden)
    pos = torch.arange(T, dtype=torch.float32)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2) / head_dim))
    angles = pos[:, None] * inv_freq  # (T, D/2)

    def by_heads(w):  # (1, heads, T, D)
        return (x @ w.T).view(T, heads, head_dim).transpose(0, 1)[None]

    emb = torch.cat([angles, angles], -1)  # transformers: dims i and i + D/2 turn by angle i
    cos, sin = emb.cos()[None], emb.sin()[None]
    q, k = apply_rope(by_heads(wq), by_heads(wk), cos, sin)
    want = q @ k.transpose(-1, -2)

    def rotate_pairs(t):  # llama.cpp's `llama` rope: dims (2i, 2i + 1) turn by angle i
        a, b = t[..., 0::2], t[..., 1::2]
        c, s = angles.cos(), angles.sin()
        return torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)

    q2 = rotate_pairs(by_heads(pairs_from_halves(wq, heads)))
    k2 = rotate_pairs(by_heads(pairs_from_halves(wk, heads)))
    torch.testing.assert_close(q2 @ k2.transpose(-1, -2), want)


@pytest.mark.parametrize(
    "data, joins",
    [
        (b"ab", False),  # whole ASCII characters
        ("你".encode(), False),  # one whole Han character
        ("你".encode()[:2], False),  # part of one, nothing else
        ("你".encode()[1:], False),
        ("你好".encode(), True),  # two Han characters in one token
        (b" " + "你".encode(), True),  # a space and a Han character
        (b"a" + "你".encode()[:1], True),  # then the start of a Han character
        ("你".encode()[2:] + b"a", True),  # the end of a Han character, then something
        ("é".encode() + b"t", False),  # whole non-Han characters
        (b"a" + "β".encode()[:1], False),  # no Han character starts like a Greek one
        ("α".encode()[1:] + b"b", True),  # but one may end like it
        (b" " + "ア".encode()[:1], True),  # E3 also starts Han characters of Extension A
    ],
)
def test_tokens_that_could_join_a_han_character_to_its_neighbour(data, joins):
    assert could_join_a_han_character(data) is joins


def test_a_chinese_english_tokenizer_maps_exactly_to_llama_cpps_pre_tokenizer(tok):
    assert pretokenizer_mismatches(tok) == []


def test_a_tokenizer_with_risky_merges_is_exported_with_a_warning(tmp_path):
    """Accents, kana, Hangul, Greek and Cyrillic teach merges across character boundaries
    (the end of one character with what follows): such tokens are named, the export warns."""
    tok = train_tokenizer((CORPUS + MANY_SCRIPTS) * 30, vocab_size=400)
    risky = pretokenizer_mismatches(tok)
    assert risky and all(could_join_a_han_character(byte_level_to_bytes(t)) for t in risky)
    model = small_model(vocab_size=len(tok))
    with pytest.warns(UserWarning, match=f"{len(risky)} tokens"):
        write_gguf(model, tok, tmp_path / "m.gguf", "f32")
    assert (tmp_path / "m.gguf").stat().st_size > 0


def test_the_template_without_generation_marks_renders_the_same_text(tok):
    from jinja2 import Template

    messages = [{"role": "system", "content": "简短"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "你好"}]
    template = gguf_chat_template(tok.chat_template)
    assert re.search(r"\{%-?\s*generation", tok.chat_template)
    assert not re.search(r"\{%-?\s*(end)?generation", template)
    rendered = Template(template).render(messages=messages, add_generation_prompt=True)
    assert rendered == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_ollama_template_renders_like_ours(tok):
    """ollama's Go template, expanded for a conversation (the two actions it uses), gives the
    text of our chat template with the generation prompt."""
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "北京？"},
                {"role": "assistant", "content": "首都。"}, {"role": "user", "content": "and?"}]
    head, body, tail = re.fullmatch(r"(.*)\{\{- range \.Messages \}\}(.*)\{\{ end \}\}(.*)", OLLAMA_TEMPLATE,
                                    re.S).groups()
    expanded = head + "".join(
        body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"]) for m in messages) + tail
    assert expanded == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_a_model_with_more_rows_than_tokens_loads_in_llama_cpp(tok, tmp_path):
    """A vocabulary trained on little text can be smaller than the model's embedding: the rows
    without a token are written as unused placeholders, and llama.cpp loads and runs the file."""
    model = small_model(vocab_size=len(tok) + 7, initializer_range=0.3, tie_word_embeddings=False)
    path = write_gguf(model, tok, tmp_path / "m.gguf", "f32")
    llm = load_llama(path, type_k=0, type_v=0)
    ids = tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    assert llm.n_vocab() == len(tok) + 7
    assert llm.tokenize(PROMPTS[0].encode(), add_bos=False, special=True) == ids
    assert llama_cpp_greedy(llm, ids, 8) == greedy_ours(model, ids, 8)
    with pytest.raises(ValueError, match="embedding rows"):
        write_gguf(small_model(vocab_size=len(tok) - 1), tok, tmp_path / "small.gguf", "f32")


def test_export_refuses_moe_and_a_wrong_destination(tmp_path, capsys, tok):
    moe = small_model(use_moe=True, vocab_size=len(tok))
    moe.save_pretrained(tmp_path / "moe")
    tok.save_pretrained(tmp_path / "moe")
    assert main([str(tmp_path / "moe"), str(tmp_path / "m.gguf"), "--format", "gguf"]) == 1
    assert "mixture-of-experts" in capsys.readouterr().err and not (tmp_path / "m.gguf").exists()
    dense = small_model(vocab_size=len(tok))
    dense.save_pretrained(tmp_path / "dense")  # no tokenizer saved with it
    assert main([str(tmp_path / "dense"), str(tmp_path / "m.gguf"), "--format", "gguf"]) == 1
    assert "tokenizer.json" in capsys.readouterr().err
    tok.save_pretrained(tmp_path / "dense")
    assert main([str(tmp_path / "dense"), str(tmp_path / "m.bin"), "--format", "gguf"]) == 1
    assert "*.gguf" in capsys.readouterr().err


# ---- llama.cpp itself ---------------------------------------------------------------------------
def detokenize_whole(llm, ids) -> str:
    """llama.cpp's own `llama_detokenize` of a whole text (what llama-server does), where the
    pre-tokenizer's space clean-up applies; llama-cpp-python's `detokenize` goes token by token."""
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    buffer = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_detokenize(vocab, (llama_cpp.llama_token * len(ids))(*ids), len(ids), buffer, 4096,
                                   False, True)
    return buffer.raw[:n].decode("utf-8")


def test_llama_cpp_tokenizes_like_us(gguf_files, tok):
    llm = load_llama(gguf_files["f32"], vocab_only=True)
    for text in TRICKY + CORPUS:
        ours = tok(text, add_special_tokens=False)["input_ids"]
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert theirs == ours, text
        assert llm.detokenize(theirs, special=True).decode("utf-8") == text
        assert detokenize_whole(llm, theirs) == tok.decode(ours) == text


def test_tool_markers_are_one_token_each_in_llama_cpp_too(tmp_path):
    """Added after training, not special: written as user-defined tokens, matched whole."""
    tok = train_tokenizer(CORPUS * 30, vocab_size=400, tool_markers=True)
    llm = load_llama(write_gguf(small_model(vocab_size=len(tok)), tok, tmp_path / "m.gguf", "f32"),
                     vocab_only=True)
    texts = ['<think>\nhm\n</think>\n<tool_call>{"name": "lookup", "arguments": {"c": "沃米亚"}}</tool_call>',
             "<|im_start|>tool\n<tool_response>贝尔</tool_response><|im_end|>"]
    for text in texts:
        ours = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == ours, text
        assert llm.detokenize(ours, special=True).decode("utf-8") == text
    for marker in TOOL_MARKERS:
        assert llm.tokenize(marker.encode(), add_bos=False, special=True) == [tok.convert_tokens_to_ids(marker)]


def greedy_ours(model, ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(ids):].tolist()


PROMPTS = ["The capital of Vomia is", "沃米亚的首都是", "<|im_start|>user\n1 + 2 = ?<|im_end|>\n<|im_start|>assistant\n"]


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_llama_cpp_gives_our_logits_and_greedy_tokens(gguf_files, checkpoint, tok, dtype):
    model, _ = checkpoint
    # An F32 key/value cache for the F32 file (llama.cpp's default cache is F16).
    cache = dict(type_k=0, type_v=0) if dtype == "f32" else {}
    llm = load_llama(gguf_files[dtype], logits_all=True, **cache)
    for prompt in PROMPTS:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        llm.reset()
        llm.eval(ids)
        theirs = torch.tensor(llm.scores[: len(ids)])
        with torch.no_grad():
            ours = model(torch.tensor([ids])).logits[0]
        tolerance = 1e-3 if dtype == "f32" else 5e-2
        error = (theirs - ours).abs().max() / ours.abs().max()
        assert error < tolerance, (prompt, error)
        assert llama_cpp_greedy(llm, ids, 16) == greedy_ours(model, ids, 16), prompt


def test_quantised_q8_0_agrees_with_us_on_most_greedy_tokens(gguf_files, checkpoint, tok):
    """Q8_0 rounds every weight to 8 bits: the next token after each prompt position agrees
    with ours on most positions (the measured share is in 07_chat)."""
    model, _ = checkpoint
    llm = load_llama(gguf_files["q8_0"], logits_all=True)
    agree = total = 0
    for text in CORPUS + TRICKY:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        llm.reset()
        llm.eval(ids)
        theirs = torch.tensor(llm.scores[: len(ids)]).argmax(-1)
        with torch.no_grad():
            ours = model(torch.tensor([ids])).logits[0].argmax(-1)
        agree += int((theirs == ours).sum())
        total += len(ids)
    assert agree / total > 0.9, (agree, total)


def test_llama_cpp_chats_through_the_embedded_template(gguf_files, checkpoint, tok):
    model, _ = checkpoint
    llm = load_llama(gguf_files["f32"])
    messages = [{"role": "user", "content": "沃米亚的首都是哪里？"}]
    reply = llm.create_chat_completion(messages, temperature=0.0, top_k=1, repeat_penalty=1.0, max_tokens=12)
    ours = chat(model, tok, messages, Sampling(max_new_tokens=12))
    # A random model writes stray bytes: we decode them as U+FFFD, llama-cpp-python drops them.
    assert reply["choices"][0]["message"]["content"] == ours.replace("\ufffd", "")
    assert reply["usage"]["prompt_tokens"] == len(tok.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])
    assert set(stop_token_ids(tok)) <= {tok.eos_token_id, tok.pad_token_id}
