"""The MiniMind decoder on the Hugging Face stack.

One class per concept, in the order a token meets them:
embedding -> [RMSNorm -> attention (RoPE, GQA) -> residual -> RMSNorm -> SwiGLU or MoE -> residual]
x N -> RMSNorm -> tied LM head.

Shapes in comments: B batch, T new tokens, S all key positions (cache + new), H hidden size,
Hq / Hkv query / key-value heads, D head dim, V vocabulary, E experts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import (
    GenericForSequenceClassification,
    GradientCheckpointingLayer,
)
from transformers.modeling_outputs import BaseModelOutputWithPast, MoeCausalLMOutputWithPast
from transformers.utils.deprecation import deprecate_kwarg


class MiniMindConfig(PretrainedConfig):
    model_type = "minimind"

    def __init__(
        self,
        vocab_size: int = 6400,
        hidden_size: int = 512,
        intermediate_size: int | None = None,
        num_hidden_layers: int = 8,
        num_attention_heads: int = 8,
        num_key_value_heads: int = 2,
        max_position_embeddings: int = 32768,
        rope_theta: float = 1e6,
        yarn_scaling: dict | None = None,
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        dropout: float = 0.0,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        use_moe: bool = False,
        num_experts: int = 4,
        num_experts_per_tok: int = 2,
        num_shared_experts: int = 1,
        norm_topk_prob: bool = True,
        aux_loss_alpha: float = 0.01,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        pad_token_id: int = 0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        # MiniMind's rule: 8/3 of hidden (SwiGLU keeps the FFN's parameter count), rounded up to 64.
        self.intermediate_size = intermediate_size or 64 * math.ceil(hidden_size * 8 / 3 / 64)
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        # None, or YaRN to stretch RoPE past the trained context at inference, e.g.
        # {"factor": 4, "original_max_position_embeddings": 2048, "beta_fast": 32, "beta_slow": 1}
        self.yarn_scaling = yarn_scaling
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.dropout = dropout
        self.use_cache = use_cache  # transformers 5 no longer defines it on the base config
        self.use_moe = use_moe
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.num_shared_experts = num_shared_experts
        self.norm_topk_prob = norm_topk_prob
        self.aux_loss_alpha = aux_loss_alpha
        # trl reloads reference models through config.auto_map: it must be a mapping.
        kwargs.setdefault("auto_map", {})
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        if hidden_size % num_attention_heads or num_attention_heads % num_key_value_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must divide by num_attention_heads ({num_attention_heads}), "
                f"which must divide by num_key_value_heads ({num_key_value_heads})"
            )


# ---------------------------------------------------------------------------------------------
# Rotary position embedding (RoPE), optionally stretched with YaRN
# ---------------------------------------------------------------------------------------------
def rope_inv_freq(config: MiniMindConfig) -> tuple[torch.Tensor, float]:
    """Per-pair rotation speeds theta_i = base^(-2i/D), and the attention scale YaRN asks for."""
    dim, base = config.head_dim, config.rope_theta
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))  # (D/2,)
    scaling = config.yarn_scaling
    if not scaling:
        return inv_freq, 1.0
    factor = scaling["factor"]
    original = scaling["original_max_position_embeddings"]
    beta_fast, beta_slow = scaling.get("beta_fast", 32), scaling.get("beta_slow", 1)

    # Dimension index whose wavelength fits `rotations` full turns into the original context.
    def dim_for(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(dim_for(beta_fast)), 0)
    high = min(math.ceil(dim_for(beta_slow)), dim - 1)
    ramp = (torch.arange(dim // 2, dtype=torch.float32) - low) / max(high - low, 1e-3)
    keep = 1 - ramp.clamp(0, 1)  # 1: fast dims keep their frequency, 0: slow dims are interpolated
    inv_freq = inv_freq / factor * (1 - keep) + inv_freq * keep
    attention_factor = 0.1 * math.log(factor) + 1.0
    return inv_freq, attention_factor


class MiniMindRotaryEmbedding(nn.Module):
    def __init__(self, config: MiniMindConfig):
        super().__init__()
        self.config = config
        inv_freq, self.attention_factor = rope_inv_freq(config)
        # Not saved: derived from the config (and recomputed in _init_weights after loading).
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # position_ids (B, T) -> angles (B, T, D/2) -> cos/sin (B, T, D), each pair's angle used twice
        angles = position_ids[..., None].float() * self.inv_freq.float()
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos() * self.attention_factor, emb.sin() * self.attention_factor
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate queries and keys (B, heads, T, D) by their positions' angles."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------
def attention_mask_4d(
    attention_mask: torch.Tensor | None,
    q_len: int,
    kv_len: int,
    device: torch.device,
    document_ids: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Boolean (B|1, 1, T, S) mask, True = may attend; None when plain `is_causal` will do.

    The T new queries sit at absolute positions S-T .. S-1, so with a cache the causal
    triangle is offset. Padding (zeros in `attention_mask`, shape (B, S)) is masked as keys.
    `document_ids` (B, T), for rows that pack several documents (packing.py): a token
    attends only to earlier tokens of its own document.
    A mask that is already 4-D (B|1, 1, T, S) is used as given: a static cache (speed.py)
    builds its own, over all the cache's slots.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask.bool()
    if document_ids is not None and kv_len != q_len:
        raise ValueError("document_ids (packed rows) need the whole sequence at once, without a cache")
    # Checking for padding reads the tensor's values: under torch.compile that would split the
    # graph in two, so a compiled model always builds the mask when it is given one.
    no_padding = attention_mask is None or (
        not torch.compiler.is_compiling() and bool(attention_mask.all())
    )
    if no_padding and kv_len == q_len and document_ids is None:
        return None
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(kv_len, device=device)[None, :]  # (1, S)
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, T, S)
    if document_ids is not None:
        mask = mask & (document_ids[:, None, :, None] == document_ids[:, None, None, :])  # (B, 1, T, T)
    if not no_padding:
        keys = attention_mask[:, None, None, -kv_len:].bool()  # (B, 1, 1, S)
        # A padding query would see nothing (NaN softmax): let every query see itself.
        mask = (mask & keys) | (k_pos == q_pos)[None, None]
    return mask


# Up to this many keys, a compiled CPU step attends faster with `matmul_attention` than with
# PyTorch's CPU flash kernel (bench/attention.py: x2.2 at 256 and 512 keys, x1.4 at 1024).
MATMUL_ATTENTION_MAX_LEN = 1024


def use_matmul_attention(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether to attend with `matmul_attention`: compiled, on CPU, a whole sequence at once.

    Under torch.compile inductor fuses the scale, mask and softmax between two oneDNN matrix
    products. Eager code, GPUs (flash kernels) and decoding steps (keys from a cache) keep SDPA.
    """
    return (
        torch.compiler.is_compiling()
        and q.device.type == "cpu"
        and q.shape[2] == k.shape[2] <= MATMUL_ATTENTION_MAX_LEN
    )


def matmul_attention(
    q: torch.Tensor,  # (B, Hq, T, D)
    k: torch.Tensor,  # (B, Hkv, S, D)
    v: torch.Tensor,  # (B, Hkv, S, D)
    mask: torch.Tensor | None,  # (B|1, 1, T, S) bool, True = may attend; None = causal
    dropout: float = 0.0,
    causal: bool = False,
) -> torch.Tensor:
    """Softmax attention written as batched matrix products: what SDPA computes.

    `causal`: the mask lets no query see a later key (true of None and of every mask
    `attention_mask_4d` builds). Then the queries go in blocks (at most 8, of 64 rows or more)
    and each block is multiplied only with the keys up to its last position: the products
    skip the masked upper triangle, 5/8 of the work at 256 keys.
    """
    T, S = q.shape[2], k.shape[2]
    if not (causal or mask is None) or T != S:
        return _attend(q, k, v, mask, dropout)
    size = max(64, -(-T // 8))
    blocks = []
    for start in range(0, T, size):
        end = min(start + size, T)
        block_mask = None if mask is None else mask[..., start:end, :end]
        blocks.append(_attend(q[:, :, start:end], k[:, :, :end], v[:, :, :end], block_mask, dropout))
    return torch.cat(blocks, dim=2) if len(blocks) > 1 else blocks[0]


def _attend(q, k, v, mask, dropout):
    """Queries (B, Hq, T, D) on the last T of S keys; mask (B|1, 1, T, S), None = causal."""
    B, Hq, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    group = Hq // Hkv
    # The query heads that share a key head, stacked into one (group * T, D) matrix: one
    # product per key head.
    scores = (q.reshape(B, Hkv, group * T, D) @ k.transpose(-1, -2)).view(B, Hkv, group, T, S)
    if mask is None:
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    else:
        mask = mask[:, :, None]  # (B|1, 1, 1, T, S): the same for every query head of a group
    # Scaled, masked and normalised in fp32 (under bf16 autocast the products run in bf16).
    scores = (scores.float() * D**-0.5).masked_fill(~mask, float("-inf"))
    probs = F.dropout(scores.softmax(-1).to(v.dtype), dropout, training=dropout > 0)
    return (probs.view(B, Hkv, group * T, S) @ v).view(B, Hq, T, D)


class MiniMindAttention(nn.Module):
    def __init__(self, config: MiniMindConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)
        # Optional: q, k and v weights stacked into one matrix, one product instead of three.
        # Not saved; speed.greedy_generate supplies it while decoding.
        self.register_buffer("qkv_weight", None, persistent=False)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, H)
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,  # (B|1, 1, T, S) from attention_mask_4d; None = plain causal
        cache: Cache | None = None,
        mask_is_causal: bool = True,  # built here, not given: shows no query a later key
    ) -> torch.Tensor:
        B, T, _ = x.shape
        if self.qkv_weight is None:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        else:
            kv = self.num_kv_heads * self.head_dim
            q, k, v = F.linear(x, self.qkv_weight).split([self.num_heads * self.head_dim, kv, kv], dim=-1)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, Hq, T, D)
        k = k.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, k, *rope)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, Hkv, S, D): past keys + these
        dropout = self.dropout if self.training else 0.0
        if use_matmul_attention(q, k):
            out = matmul_attention(q, k, v, mask, dropout, causal=mask_is_causal)
        else:
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None and T > 1,
                dropout_p=dropout,
                enable_gqa=self.num_heads != self.num_kv_heads,  # each kv head serves Hq/Hkv query heads
            )  # (B, Hq, T, D)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))


# ---------------------------------------------------------------------------------------------
# Feed-forward: SwiGLU, and a mixture of SwiGLU experts
# ---------------------------------------------------------------------------------------------
class MiniMindMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: MiniMindConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        # Optional: gate and up weights stacked, one product instead of two (see MiniMindAttention).
        self.register_buffer("gate_up_weight", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_weight is None:
            gate, up = self.gate_proj(x), self.up_proj(x)
        else:
            gate, up = F.linear(x, self.gate_up_weight).chunk(2, dim=-1)
        return self.dropout(self.down_proj(F.silu(gate) * up))


class MiniMindMoE(nn.Module):
    """Top-k routed experts plus always-on shared experts, with a load-balancing loss.

    The router scores every token against every expert; each token is processed by its
    top-k experts, weighted by the (renormalised) router probabilities. `aux_loss` pushes
    the router to spread tokens evenly (Switch Transformer: E * sum_i f_i * P_i).
    """

    def __init__(self, config: MiniMindConfig):
        super().__init__()
        self.top_k, self.num_experts = config.num_experts_per_tok, config.num_experts
        self.norm_topk_prob, self.alpha = config.norm_topk_prob, config.aux_loss_alpha
        self.router = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(MiniMindMLP(config) for _ in range(config.num_experts))
        self.shared_experts = nn.ModuleList(MiniMindMLP(config) for _ in range(config.num_shared_experts))
        self.aux_loss = torch.tensor(0.0)
        self.last_expert_load = torch.zeros(config.num_experts)  # share of routed slots, for plots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        tokens = x.reshape(-1, H)  # (B*T, H)
        probs = self.router(tokens).softmax(dim=-1)  # (B*T, E)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (B*T, k)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token_idx, slot = (chosen == e).nonzero(as_tuple=True)
            if token_idx.numel():
                out.index_add_(0, token_idx, expert(tokens[token_idx]) * weights[token_idx, slot, None])
        for shared in self.shared_experts:
            out = out + shared(tokens)

        load = F.one_hot(chosen, self.num_experts).float().mean(dim=(0, 1))  # f_i: share of slots
        self.last_expert_load = load.detach()
        self.aux_loss = self.alpha * self.num_experts * (load * probs.mean(dim=0)).sum()
        return out.view(B, T, H)


# ---------------------------------------------------------------------------------------------
# The decoder
# ---------------------------------------------------------------------------------------------
class MiniMindBlock(GradientCheckpointingLayer):
    def __init__(self, config: MiniMindConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = MiniMindAttention(config, layer_idx)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = MiniMindMoE(config) if config.use_moe else MiniMindMLP(config)

    def forward(self, x, rope, mask=None, cache=None, mask_is_causal=True):
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache, mask_is_causal)
        return x + self.mlp(self.post_attention_layernorm(x))


class MiniMindPreTrainedModel(PreTrainedModel):
    config_class = MiniMindConfig
    base_model_prefix = "model"  # trl reads model.base_model(...).last_hidden_state
    supports_gradient_checkpointing = True
    _no_split_modules = ["MiniMindBlock"]
    _supports_sdpa = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MiniMindRotaryEmbedding):
            # Non-persistent buffers come back uninitialised from from_pretrained: rebuild them.
            init.copy_(module.inv_freq, rope_inv_freq(module.config)[0])


class MiniMindModel(MiniMindPreTrainedModel):
    def __init__(self, config: MiniMindConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(MiniMindBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = MiniMindRotaryEmbedding(config)
        self.gradient_checkpointing = False
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, S)
        position_ids: torch.LongTensor | None = None,  # (B, T)
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        document_ids: torch.LongTensor | None = None,  # (B, T): packed rows, see attention_mask_4d
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, H)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False  # recomputed blocks must not append to the cache twice
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        given_4d = attention_mask is not None and attention_mask.dim() == 4
        # Tokens already in the cache (not needed, nor asked, when positions and a 4-D mask are given).
        past = 0 if cache is None or (given_4d and position_ids is not None) else cache.get_seq_length()
        if position_ids is None:
            position_ids = torch.arange(past, past + x.shape[1], device=x.device)[None]  # (1, T)
        rope = self.rotary_emb(x, position_ids)
        # One mask for all layers: built (and the padding checked) once per forward.
        mask = attention_mask_4d(attention_mask, x.shape[1], past + x.shape[1], x.device, document_ids)
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x, rope, mask, cache, not given_4d)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), cache=cache)


class MiniMindForCausalLM(MiniMindPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MiniMindConfig):
        super().__init__(config)
        self.model = MiniMindModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def aux_loss(self) -> torch.Tensor | None:
        """Sum of the MoE layers' load-balancing losses from the last forward, None if dense."""
        if not self.config.use_moe:
            return None
        return sum(layer.mlp.aux_loss for layer in self.model.layers)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        document_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> MoeCausalLMOutputWithPast:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            document_ids=document_ids,
        )
        hidden = out.last_hidden_state
        # Generation only needs the last position's logits: skip the (T, V) product for the rest.
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)  # (B, T, V)
        loss = None
        if labels is not None:
            # Shifts labels by one and ignores -100 (transformers' ForCausalLMLoss).
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        aux = self.aux_loss()
        if loss is not None and aux is not None:
            loss = loss + aux
        return MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux, logits=logits, cache=out.cache)


class MiniMindForSequenceClassification(GenericForSequenceClassification, MiniMindPreTrainedModel):
    """A scalar head on the last real token: the shape of a reward model (num_labels=1)."""


AutoConfig.register("minimind", MiniMindConfig, exist_ok=True)
AutoModel.register(MiniMindConfig, MiniMindModel, exist_ok=True)
AutoModelForCausalLM.register(MiniMindConfig, MiniMindForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(MiniMindConfig, MiniMindForSequenceClassification, exist_ok=True)


def config_from_profile(profile, **overrides) -> MiniMindConfig:
    """A MiniMindConfig with the profile's dimensions."""
    dims = dict(vars(profile.model))
    dims.update(overrides)
    return MiniMindConfig(**dims)


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (the tied LM head counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
