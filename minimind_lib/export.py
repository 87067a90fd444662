"""Export a dense MiniMind checkpoint as a standard transformers Llama model.

MiniMind's dense decoder is the Llama architecture (RMSNorm, RoPE, GQA, SwiGLU, tied
embeddings), and its modules carry Llama's names, so export is a config translation plus
a copy of the weights. The result loads with plain `AutoModelForCausalLM.from_pretrained`,
without this library, in vLLM, llama.cpp's converter and any other Llama-aware tool.

    python -m minimind_lib.export SRC_DIR DST_DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minimind_lib.export", description=__doc__.split("\n")[0])
    parser.add_argument("src", help="a saved MiniMind checkpoint directory")
    parser.add_argument("dst", help="where to write the Llama checkpoint")
    args = parser.parse_args(argv)
    try:
        out = export(args.src, args.dst)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported {args.src} -> {out} (LlamaForCausalLM)")
    return 0


if __name__ == "__main__":
    with torch.no_grad():
        sys.exit(main())
