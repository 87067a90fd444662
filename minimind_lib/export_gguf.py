"""Export a dense MiniMind checkpoint as one GGUF file, for llama.cpp and ollama.

GGUF holds everything llama.cpp needs in one file: the weights (F32, F16, BF16 or Q8_0),
the architecture (written as llama.cpp's `llama`: RMSNorm, RoPE, GQA, SwiGLU, tied
embeddings), the byte-level BPE vocabulary with its merges and special tokens, and the chat
template.

Two translations are needed on the way:
- RoPE layout: transformers rotates the two halves of each head (`rotate_half`), llama.cpp's
  `llama` architecture rotates adjacent pairs. The rows of the query and key weights are
  reordered so that both compute the same rotation (`pairs_from_halves`).
- Pre-tokenizer: llama.cpp implements a fixed list of pre-tokenizers, and ours (each Han
  character and each digit on its own, then GPT-2's split) is not one of them. llama.cpp's
  `smollm` is the same without the Han step: digits on their own, GPT-2's split, no space
  clean-up on decoding. Keeping Han characters apart only matters if a merge could join a
  Han character to its neighbour, and that needs a token holding part of a Han character and
  something else (merges are learned inside the pieces, and our pieces never hold a Han
  character with anything else; such a token can only come from bytes of other scripts that
  could also be part of one). `pretokenizer_mismatches` lists such tokens, the export warns
  when there are any (the course's tokenizers have none), and the token ids are checked
  against llama.cpp itself in tests/test_gguf.py.

    python -m minimind_lib.export SRC_DIR model.gguf --format gguf --type q8_0
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import regex
import torch

from .model import MiniMindConfig, MiniMindForCausalLM
from .tokenizer import byte_level_to_bytes

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
LLAMA_CPP_PRE_TOKENIZER = "smollm"  # see the module docstring


def _ggml_types():
    import gguf

    quant = gguf.GGMLQuantizationType
    file_type = gguf.LlamaFileType
    return {
        "f32": (quant.F32, file_type.ALL_F32),
        "f16": (quant.F16, file_type.MOSTLY_F16),
        "bf16": (quant.BF16, file_type.MOSTLY_BF16),
        "q8_0": (quant.Q8_0, file_type.MOSTLY_Q8_0),
    }


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------
def pairs_from_halves(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorder the output rows of a query or key projection (heads * D, H) so that the rotation
    of adjacent pairs (llama.cpp) gives what the rotation of halves (transformers) gave.

    In each head, transformers pairs dimension i with i + D/2; llama.cpp pairs 2i with 2i + 1.
    Row i goes to 2i and row i + D/2 to 2i + 1."""
    rows, cols = weight.shape
    head_dim = rows // num_heads
    return weight.reshape(num_heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(rows, cols)


GGUF_NAMES = {  # our (Llama) names -> llama.cpp's, per block
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_tensors(model: MiniMindForCausalLM) -> Iterator[tuple[str, torch.Tensor]]:
    """(llama.cpp name, fp32 tensor) of every weight. A tied output head is left out: llama.cpp
    then reads the token embedding for it too."""
    cfg = model.config
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    yield "token_embd.weight", state.pop("model.embed_tokens.weight")
    yield "output_norm.weight", state.pop("model.norm.weight")
    head = state.pop("lm_head.weight", None)
    if not cfg.tie_word_embeddings and head is not None:
        yield "output.weight", head
    pattern = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")
    for name, tensor in state.items():
        match = pattern.fullmatch(name)
        if match is None or match.group(2) not in GGUF_NAMES:
            raise ValueError(f"{name}: a weight llama.cpp's llama architecture has no place for")
        block, part = match.groups()
        if part == "self_attn.q_proj":
            tensor = pairs_from_halves(tensor, cfg.num_attention_heads)
        elif part == "self_attn.k_proj":
            tensor = pairs_from_halves(tensor, cfg.num_key_value_heads)
        yield f"blk.{block}.{GGUF_NAMES[part]}.weight", tensor


def _encode(tensor: torch.Tensor, qtype):
    """(data, GGML type or None for a plain numpy dtype) of a tensor stored as `qtype`; norms
    (1-D) stay F32, and a matrix whose rows do not divide into blocks of 32 falls back to F16."""
    import gguf

    array = tensor.numpy()
    if array.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        return array.astype(np.float32), None
    if qtype == gguf.GGMLQuantizationType.F16 or array.shape[-1] % 32:
        return array.astype(np.float16), None
    return gguf.quants.quantize(array, qtype), qtype


# ---------------------------------------------------------------------------------------------
# Tokenizer and chat template
# ---------------------------------------------------------------------------------------------
@functools.cache
def _han_pieces() -> tuple[frozenset[bytes], frozenset[bytes], frozenset[bytes]]:
    """UTF-8 encodings of the Han characters, their proper prefixes and their proper suffixes."""
    han = regex.compile(r"\p{Han}")
    chars = [chr(c) for c in range(0x2E80, 0x32000) if not 0xD800 <= c < 0xE000 and han.match(chr(c))]
    whole = frozenset(c.encode() for c in chars)
    prefixes = frozenset(w[:i] for w in whole for i in range(1, len(w)))
    suffixes = frozenset(w[i:] for w in whole for i in range(1, len(w)))
    return whole, prefixes, suffixes


def _char_length(lead: int) -> int:
    """Bytes of the UTF-8 character a lead byte starts (1 for a stray continuation byte)."""
    for length, (mask, value) in enumerate([(0x80, 0), (0xE0, 0xC0), (0xF0, 0xE0), (0xF8, 0xF0)], 1):
        if lead & mask == value:
            return length
    return 1


def could_join_a_han_character(data: bytes) -> bool:
    """Whether a token's bytes could hold part of a Han character and something next to it:
    a whole Han character with other bytes, or, with other bytes beside them, continuation
    bytes at the start that could end a Han character or a cut character at the end that could
    begin one. Only such a token lets BPE join a Han character to its neighbour."""
    whole, prefixes, suffixes = _han_pieces()
    start = 0
    while start < len(data) and 0x80 <= data[start] < 0xC0:
        start += 1
    if 0 < start < len(data) and data[:start] in suffixes:
        return True
    pos = start
    while pos < len(data):
        length = _char_length(data[pos])
        char, cut = data[pos : pos + length], pos + length > len(data)
        if len(char) < len(data) and (char in prefixes if cut else char in whole):
            return True
        pos += length
    return False


def pretokenizer_mismatches(tokenizer) -> list[str]:
    """Tokens that could make llama.cpp's `smollm` pre-tokenizer disagree with ours (see the
    module docstring); empty when the two give the same token ids on every text."""
    special = set(tokenizer.all_special_tokens)
    return [
        token
        for token in tokenizer.get_vocab()
        if token not in special and could_join_a_han_character(byte_level_to_bytes(token))
    ]


def gguf_chat_template(template: str) -> str:
    """The chat template without its `{% generation %}` marks: they only tell transformers
    which tokens are the assistant's (for SFT's loss mask), and other Jinja engines do not
    know the tag."""
    return re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", template)


def _add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    """The tokenizer's vocabulary, merges, special tokens and chat template. A model may have
    more embedding rows than the tokenizer has tokens (a vocabulary trained on little text):
    llama.cpp needs one token a row, so the rest are written as unused placeholders."""
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    # tokens added after training (the tool markers) have an id but no place in the BPE vocab
    vocab = {t["content"]: t["id"] for t in spec["added_tokens"]} | spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("the tokenizer's ids are not 0..V-1 without gaps")
    if len(tokens) > vocab_size:
        raise ValueError(f"the tokenizer has {len(tokens)} tokens, the model only {vocab_size} embedding rows")
    # special: control tokens; added but not special (never split, kept on decode): user-defined
    kinds = {t["content"]: t["special"] for t in spec["added_tokens"]}
    type_of = {True: gguf.TokenType.CONTROL, False: gguf.TokenType.USER_DEFINED}
    types = [type_of[kinds[t]] if t in kinds else gguf.TokenType.NORMAL for t in tokens]
    unused = range(len(tokens), vocab_size)
    tokens += [f"[UNUSED{i}]" for i in unused]
    types += [gguf.TokenType.UNUSED for _ in unused]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")  # byte-level BPE
    writer.add_tokenizer_pre(LLAMA_CPP_PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)  # our prompts start with the template's own tokens
    writer.add_add_eos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(gguf_chat_template(tokenizer.chat_template))


def llama_cpp_greedy(llm, ids: list[int], n: int) -> list[int]:
    """The first `n` greedy tokens llama.cpp (a llama-cpp-python `Llama`) writes after `ids`,
    without a repetition penalty and without stopping at an end token, as `generate` with
    `min_new_tokens=n` does."""
    tokens = llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)
    return list(itertools.islice(tokens, n))


# ChatML, the chat template's format, in ollama's Go template language. ollama renders the
# conversation itself and always ends with the assistant's opening line, as our template does
# with add_generation_prompt=True.
OLLAMA_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


def ollama_modelfile(gguf_file: str | Path, tokenizer, num_ctx: int) -> str:
    """An ollama Modelfile for a GGUF file: the template, the stop tokens, greedy by default
    (`ollama run` and its API may still set their own temperature)."""
    stops = [tokenizer.eos_token, tokenizer.pad_token]  # <|im_end|> ends a reply, <|endoftext|> a text
    lines = [f"FROM ./{Path(gguf_file).name}", f'TEMPLATE """{OLLAMA_TEMPLATE}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in dict.fromkeys(stops)]
    lines += ["PARAMETER temperature 0", f"PARAMETER num_ctx {num_ctx}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------
def _add_architecture(writer, cfg: MiniMindConfig, name: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if cfg.yarn_scaling:
        yarn = cfg.yarn_scaling
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(yarn["factor"])
        writer.add_rope_scaling_orig_ctx_len(yarn["original_max_position_embeddings"])
        writer.add_rope_scaling_yarn_beta_fast(yarn.get("beta_fast", 32))
        writer.add_rope_scaling_yarn_beta_slow(yarn.get("beta_slow", 1))


def write_gguf(model: MiniMindForCausalLM, tokenizer, path: str | Path, dtype: str = "f16") -> Path:
    """Write `model` and `tokenizer` to one GGUF file at `path`, weights stored as `dtype`."""
    import gguf

    if dtype not in GGUF_TYPES:
        raise ValueError(f"--type {dtype!r}: choose one of {', '.join(GGUF_TYPES)}")
    if model.config.use_moe:
        raise ValueError(
            "this checkpoint uses mixture-of-experts layers, which the llama architecture has no "
            "place for; only dense MiniMind checkpoints can be exported"
        )
    mismatches = pretokenizer_mismatches(tokenizer)
    if mismatches:
        shown = ", ".join(repr(byte_level_to_bytes(t)) for t in mismatches[:5])
        warnings.warn(
            f"{len(mismatches)} tokens hold part of a Han character (or bytes that could be one) "
            f"with something else (e.g. {shown}): where such bytes meet a Han character, "
            f"llama.cpp's '{LLAMA_CPP_PRE_TOKENIZER}' pre-tokenizer may cut the text into other "
            "tokens than this tokenizer does",
            stacklevel=2,
        )
    qtype, file_type = _ggml_types()[dtype]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    _add_architecture(writer, model.config, path.stem)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, model.config.vocab_size)
    for name, tensor in gguf_tensors(model):
        data, raw_type = _encode(tensor, qtype)
        writer.add_tensor(name, data, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
