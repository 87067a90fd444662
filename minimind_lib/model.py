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
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import (
    GenericForSequenceClassification,
    GradientCheckpointingLayer,
)
from transformers.modeling_outputs import BaseModelOutputWithPast, MoeCausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, slice_logits_to_keep
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
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,  # (B, Hq, T, D)
    key: torch.Tensor,  # (B, Hkv, S, D)
    value: torch.Tensor,  # (B, Hkv, S, D)
    attention_mask: torch.Tensor | None,  # (B|1, 1, T, S): additive, or bool (True = may attend); None = causal
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out step by step (`attn_implementation="eager"`): the output
    (B, T, Hq, D) and the attention weights (B, Hq, T, S), which `output_attentions` returns."""
    key = repeat_kv(key, module.num_key_value_groups)  # (B, Hq, S, D): each kv head serves a group
    value = repeat_kv(value, module.num_key_value_groups)
    T, S = query.shape[2], key.shape[2]
    if attention_mask is None:  # the last T of S positions: query t sees keys up to S - T + t
        attention_mask = torch.ones(T, S, dtype=torch.bool, device=query.device).tril(S - T)
    scores = (query @ key.transpose(2, 3)) * scaling  # (B, Hq, T, S)
    if attention_mask.dtype == torch.bool:  # (the mask sdpa gets, when the weights are asked of an sdpa model)
        attention_mask = torch.zeros_like(attention_mask, dtype=scores.dtype).masked_fill(
            ~attention_mask, torch.finfo(scores.dtype).min)
    weights = (scores + attention_mask).softmax(-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, dropout, training=dropout > 0)
    return (weights @ value).transpose(1, 2).contiguous(), weights


def attention_function(module: nn.Module, output_attentions: bool):
    """The attention implementation a call runs: eager when the weights are asked for, else the
    config's one from transformers' registry (`ALL_ATTENTION_FUNCTIONS`: "sdpa", "flex_attention",
    or one registered elsewhere, like speed.py's compiled CPU matrix products).

    transformers' "sdpa" repeats the key/value heads when a mask is given on CUDA, where SDPA
    with `enable_gqa` and a mask would fall back to its slow math kernel (on a CPU both give
    the same numbers, bit for bit)."""
    if output_attentions:
        return eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation, eager_attention_forward)


class MiniMindAttention(nn.Module):
    def __init__(self, config: MiniMindConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_kv_heads  # query heads a kv head serves
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, T, Hq * D), keys and values (B, T, Hkv * D) of x (B, T, H)."""
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, H)
        rope: tuple[torch.Tensor, torch.Tensor],
        mask,  # (B|1, 1, T, S) from create_causal_mask (a flex BlockMask for flex_attention); None = causal
        cache: Cache | None = None,
        mask_is_causal: bool = True,  # built by the model, not given: shows no query a later key
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output (B, T, H), attention weights (B, Hq, T, S) when asked for, else None)."""
        B, T, _ = x.shape
        q, k, v = self.project_qkv(x)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, Hq, T, D)
        k = k.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, k, *rope)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, Hkv, S, D): past keys + these
        attend = attention_function(self, output_attentions)
        out, weights = attend(self, q, k, v, mask, dropout=self.dropout if self.training else 0.0,
                              scaling=self.scaling, is_causal=mask_is_causal)  # (B, T, Hq, D)
        return self.o_proj(out.reshape(B, T, -1)), weights


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


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
                routed = expert(tokens[token_idx]) * weights[token_idx, slot, None]
                out.index_add_(0, token_idx, routed.to(out.dtype))  # bf16 under autocast
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

    def forward(self, x, rope, mask=None, cache=None, mask_is_causal=True, output_attentions=False):
        """(x after the block, its attention weights or None). `cache` is given by keyword, so
        that under gradient checkpointing the layer drops it (transformers' GradientCheckpointingLayer):
        a block recomputed in the backward pass must not append to the cache a second time."""
        attended, weights = self.self_attn(self.input_layernorm(x), rope, mask, cache, mask_is_causal, output_attentions)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), weights


class MiniMindPreTrainedModel(PreTrainedModel):
    config_class = MiniMindConfig
    base_model_prefix = "model"  # trl reads model.base_model(...).last_hidden_state
    supports_gradient_checkpointing = True
    _no_split_modules = ["MiniMindBlock"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True  # any implementation registered with transformers' AttentionInterface

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
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, H)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache = False  # recomputed blocks must not append to the cache twice
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        given_4d = attention_mask is not None and attention_mask.dim() == 4
        # Tokens already in the cache (not needed, nor asked, when positions and a 4-D mask are given).
        past = 0 if cache is None or (given_4d and position_ids is not None) else cache.get_seq_length()
        given_positions = position_ids is not None
        if position_ids is None:
            position_ids = torch.arange(past, past + x.shape[1], device=x.device)[None]  # (1, T)
        rope = self.rotary_emb(x, position_ids)
        # One mask for all layers, from transformers' masking utilities in the form the attention
        # implementation takes (None where SDPA's own causal flag will do): causal, padding hidden
        # as keys, and for rows packing several documents (position ids restarting at 0, no
        # attention_mask) each document kept to itself. A 4-D mask is used as given.
        # (An empty dynamic cache holds no past: the mask is that of a fresh row, whose restarting
        # positions may mark packed documents; transformers looks for them only without a cache.)
        fresh = past == 0 and isinstance(cache, DynamicCache)
        mask = attention_mask.bool() if given_4d else create_causal_mask(
            config=self.config, inputs_embeds=x, attention_mask=attention_mask, cache=None if fresh else cache,
            position_ids=position_ids if given_positions else None)  # ours are one document: no mask needed
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        hidden_states, attentions = [], []  # as Llama: each block's input, then the final normed state
        x = self.dropout(x)
        for layer in self.layers:
            hidden_states.append(x)
            x, weights = layer(x, rope, mask, cache=cache, mask_is_causal=not given_4d,
                               output_attentions=output_attentions)
            attentions.append(weights)
        x = self.norm(x)
        return BaseModelOutputWithPast(last_hidden_state=x, cache=cache,
                                       hidden_states=(*hidden_states, x) if output_hidden_states else None,
                                       attentions=tuple(attentions) if output_attentions else None)


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
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> MoeCausalLMOutputWithPast:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        # Generation only needs the last position's logits: skip the (T, V) product for the rest.
        # An int keeps the last positions (0: all), a tensor the positions it lists.
        hidden = slice_logits_to_keep(out.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden)  # (B, T, V)
        loss = None
        if labels is not None:
            # Shifts labels by one and ignores -100 (transformers' ForCausalLMLoss).
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        aux = self.aux_loss()
        if loss is not None and aux is not None:
            loss = loss + aux
        return MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux, logits=logits, cache=out.cache,
                                         hidden_states=out.hidden_states, attentions=out.attentions)


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
