"""Export a dense MiniMind checkpoint as a standard transformers Llama model.

MiniMind's dense decoder is the Llama architecture (RMSNorm, RoPE, GQA, SwiGLU, tied
embeddings), and its modules carry Llama's names, so export is a config translation plus
a copy of the weights. The result loads with plain `AutoModelForCausalLM.from_pretrained`,
without this library, in vLLM, llama.cpp's converter and any other Llama-aware tool.

    python -m minimind_lib.export SRC_DIR DST_DIR
    python -m minimind_lib.export SRC_DIR model.gguf --format gguf [--type f32|f16|bf16|q8_0]

`--format gguf` writes one file for llama.cpp and ollama instead (`export_gguf.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from .export_gguf import GGUF_TYPES, ollama_modelfile, write_gguf
from .model import MiniMindConfig, MiniMindForCausalLM


def llama_config(cfg: MiniMindConfig) -> LlamaConfig:
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.yarn_scaling:
        rope = {"rope_type": "yarn", "rope_theta": cfg.rope_theta, **cfg.yarn_scaling}
    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters=rope,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id,
        attention_bias=False,
        mlp_bias=False,
        torch_dtype=str(getattr(cfg, "dtype", None) or "float32").replace("torch.", ""),
    )


def to_llama(model: MiniMindForCausalLM) -> LlamaForCausalLM:
    """The same network as a LlamaForCausalLM (weights copied, names already match)."""
    if model.config.use_moe:
        raise ValueError(
            "this checkpoint uses mixture-of-experts layers, which the Llama architecture has no "
            "place for; only dense MiniMind checkpoints can be exported"
        )
    llama = LlamaForCausalLM(llama_config(model.config))
    missing, unexpected = llama.load_state_dict(model.state_dict(), strict=False)
    # The tied lm_head may be absent from either side; anything else is a real mismatch.
    missing = [k for k in missing if k != "lm_head.weight"]
    unexpected = [k for k in unexpected if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"weight names differ: missing {missing}, unexpected {unexpected}")
    llama.tie_weights()
    return llama.to(next(model.parameters()).dtype).eval()


def export(src: str | Path, dst: str | Path) -> Path:
    """Load a MiniMind checkpoint directory, write it as Llama (+ tokenizer files) to dst."""
    src, dst = Path(src), Path(dst)
    if not (src / "config.json").exists():
        raise FileNotFoundError(f"{src}: no config.json, not a saved checkpoint directory")
    if src.resolve() == dst.resolve():
        raise ValueError("DST_DIR must differ from SRC_DIR: export never writes over its input")
    model = MiniMindForCausalLM.from_pretrained(src)
    llama = to_llama(model)
    dst.mkdir(parents=True, exist_ok=True)
    llama.save_pretrained(dst)
    if (src / "tokenizer.json").exists():
        AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def export_gguf(src: str | Path, dst: str | Path, dtype: str = "f16") -> Path:
    """Load a MiniMind checkpoint directory (with its tokenizer), write it as one GGUF file.
    `dst` is the file, or an existing directory to write `<checkpoint name>-<dtype>.gguf` in."""
    src, dst = Path(src), Path(dst)
    if not (src / "config.json").exists():
        raise FileNotFoundError(f"{src}: no config.json, not a saved checkpoint directory")
    if not (src / "tokenizer.json").exists():
        raise FileNotFoundError(f"{src}: no tokenizer.json; a GGUF file carries the tokenizer too")
    if dst.is_dir():
        dst = dst / f"{src.resolve().name}-{dtype}.gguf"
    elif dst.suffix != ".gguf":
        raise ValueError(f"{dst}: name the GGUF file *.gguf, or give an existing directory")
    model = MiniMindForCausalLM.from_pretrained(src)
    tokenizer = AutoTokenizer.from_pretrained(src)
    path = write_gguf(model, tokenizer, dst, dtype)
    # An ollama Modelfile next to it; the course trains on short texts, so a short context.
    num_ctx = min(model.config.max_position_embeddings, 2048)
    path.with_suffix(".Modelfile").write_text(ollama_modelfile(path, tokenizer, num_ctx), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minimind_lib.export", description=__doc__.split("\n")[0])
    parser.add_argument("src", help="a saved MiniMind checkpoint directory")
    parser.add_argument("dst", help="where to write: a directory (llama), a .gguf file or a directory (gguf)")
    parser.add_argument("--format", choices=["llama", "gguf"], default="llama",
                        help="llama: a transformers Llama checkpoint (default); gguf: one file for llama.cpp")
    parser.add_argument("--type", default="f16", choices=GGUF_TYPES,
                        help="how --format gguf stores the weights (default f16)")
    args = parser.parse_args(argv)
    try:
        if args.format == "gguf":
            out = export_gguf(args.src, args.dst, args.type)
        else:
            out = export(args.src, args.dst)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.format == "llama":
        print(f"exported {args.src} -> {out} (LlamaForCausalLM)")
        return 0
    modelfile = out.with_suffix(".Modelfile")
    print(f"exported {args.src} -> {out} (GGUF, {args.type}, {out.stat().st_size / 2**20:.1f} MiB) and {modelfile}")
    print(f"  llama.cpp: llama-cli -m {out} -cnv")
    print(f"  ollama:    ollama create {out.stem} -f {modelfile} && ollama run {out.stem}")
    return 0


if __name__ == "__main__":
    with torch.no_grad():
        sys.exit(main())
