"""The model: shapes, masks, cache equivalence, save/load, MoE, reward head, parameter count."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import small_config, small_model
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.masking_utils import create_causal_mask
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from minimind_lib.model import (
    MiniMindForCausalLM,
    MiniMindForSequenceClassification,
    config_from_profile,
    count_parameters,
    rope_inv_freq,
)
from minimind_lib.profiles import FULL, TINY

torch.set_num_threads(1)


@pytest.fixture
def model():
    return small_model()


def ids(batch=2, length=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 128, (batch, length), generator=g)


def test_full_profile_is_minimind2_small():
    n = count_parameters(MiniMindForCausalLM(config_from_profile(FULL)))
    assert abs(n - 25.8e6) <= 0.1e6, n


def test_tiny_profile_is_about_one_million():
    n = count_parameters(MiniMindForCausalLM(config_from_profile(TINY)))
    assert 0.5e6 <= n <= 1.5e6, n


def test_logits_shape_and_tied_head(model):
    out = model(ids())
    assert out.logits.shape == (2, 12, 128)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_loss_is_shifted_cross_entropy(model):
    x = ids()
    labels = x.clone()
    labels[0, :4] = -100  # masked positions must not count
    out = model(x, labels=labels)
    manual = F.cross_entropy(out.logits[:, :-1].reshape(-1, 128), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, manual)


def test_attention_matches_manual_gqa_with_padding(model):
    """SDPA with enable_gqa + our mask == softmax(QK^T/sqrt(d) + mask) V with repeated kv heads."""
    attn = model.model.layers[0].self_attn
    x = torch.randn(2, 6, 64)
    mask2d = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    pos = (mask2d.cumsum(-1) - 1).clamp(min=0)
    rope = model.model.rotary_emb(x, pos)
    allowed = create_causal_mask(model.config, x, mask2d, None)  # (2, 1, 6, 6) bool, True = may attend
    got, _ = attn(x, rope, allowed)

    from minimind_lib.model import apply_rope

    q = attn.q_proj(x).view(2, 6, 4, 16).transpose(1, 2)
    k = attn.k_proj(x).view(2, 6, 2, 16).transpose(1, 2)
    v = attn.v_proj(x).view(2, 6, 2, 16).transpose(1, 2)
    q, k = apply_rope(q, k, *rope)
    k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = q @ k.transpose(-1, -2) / 4.0
    scores = scores.masked_fill(~allowed, float("-inf"))
    want = attn.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 6, 64))
    # Only real (non-padding) query positions matter.
    torch.testing.assert_close(got[0, 2:], want[0, 2:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-4)


def test_mask_is_causal_with_cache_offset(model):
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache(config=model.config)
    model(ids(1, 3), cache=cache, use_cache=True)  # 3 tokens in the cache
    x = model.model.embed_tokens(ids(1, 2))
    m = create_causal_mask(model.config, x, torch.ones(1, 5, dtype=torch.long), cache)[0, 0]
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert create_causal_mask(model.config, x, None, None) is None  # plain is_causal path


def test_chunked_prefill_matches_full_forward(model):
    x = ids(1, 16)
    full = model(x).logits
    out = model(x[:, :7], use_cache=True)
    rest = model(x[:, 7:13], cache=out.cache, use_cache=True)
    last = model(x[:, 13:], cache=rest.cache, use_cache=True)
    torch.testing.assert_close(torch.cat([out.logits, rest.logits, last.logits], 1), full, atol=1e-5, rtol=1e-4)


def test_cached_and_uncached_greedy_generation_agree(model):
    x = ids(2, 8)
    a = model.generate(x, max_new_tokens=12, do_sample=False, use_cache=True, pad_token_id=0)
    b = model.generate(x, max_new_tokens=12, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(a, b)


def test_left_padded_batch_matches_single_prompts(model):
    short, long = ids(1, 5, seed=2), ids(1, 9, seed=3)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    mask = (torch.arange(9) >= torch.tensor([[4], [0]])).long()
    kw = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    cached = model.generate(batch, attention_mask=mask, use_cache=True, **kw)
    uncached = model.generate(batch, attention_mask=mask, use_cache=False, **kw)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[0, 9:], model.generate(short, **kw)[0, 5:])
    assert torch.equal(cached[1, 9:], model.generate(long, **kw)[0, 9:])


def test_decoding_feeds_one_new_token_per_step(model):
    seen = []
    hook = model.model.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs["input_ids"].shape[1]),
                                             with_kwargs=True)
    model.generate(ids(1, 7), max_new_tokens=5, do_sample=False, pad_token_id=0)
    hook.remove()
    assert seen == [7, 1, 1, 1, 1]


def test_save_load_gives_identical_logits_in_a_fresh_process(model, tmp_path):
    model.save_pretrained(tmp_path)
    x = ids()
    torch.save(x, tmp_path / "x.pt")
    torch.save(model(x).logits, tmp_path / "want.pt")
    code = textwrap.dedent(f"""
        import torch, minimind_lib
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}).eval()
        got = m(torch.load({str(tmp_path / "x.pt")!r})).logits
        assert type(m).__name__ == "MiniMindForCausalLM"
        assert torch.equal(got, torch.load({str(tmp_path / "want.pt")!r})), "logits differ"
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "minimind"


def test_moe_aux_loss_and_gradients_reach_every_expert():
    torch.manual_seed(0)
    m = MiniMindForCausalLM(small_config(use_moe=True, num_experts=4, num_experts_per_tok=2))
    x = ids(4, 16)
    out = m(x, labels=x)
    assert out.aux_loss is not None and out.aux_loss.item() > 0
    plain = F.cross_entropy(out.logits[:, :-1].reshape(-1, 128), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, plain + out.aux_loss)
    out.loss.backward()
    for layer in m.model.layers:
        for expert in list(layer.mlp.experts) + list(layer.mlp.shared_experts):
            assert expert.gate_proj.weight.grad.abs().sum() > 0
        assert layer.mlp.router.weight.grad.abs().sum() > 0
        torch.testing.assert_close(layer.mlp.last_expert_load.sum(), torch.tensor(1.0))


def test_gradient_checkpointing_recomputes_and_gives_same_gradients():
    torch.manual_seed(0)
    m = MiniMindForCausalLM(small_config()).train()
    calls, mlp = [], m.model.layers[0].mlp
    forward = mlp.forward
    mlp.forward = lambda *args: calls.append(1) or forward(*args)  # counts runs (hooks skip the recompute)
    x = ids()
    m(x, labels=x).loss.backward()
    want = [p.grad.clone() for p in m.parameters()]
    assert len(calls) == 1
    m.zero_grad()
    m.activation_checkpointing_enable()
    m(x, labels=x).loss.backward()
    assert len(calls) == 3  # once forward, once more in the backward pass: really recomputed
    for g, w in zip((p.grad for p in m.parameters()), want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-5)


def test_the_cache_is_kept_in_train_mode_with_checkpointing_when_no_gradient_is_taken():
    torch.manual_seed(0)
    m = MiniMindForCausalLM(small_config()).train()  # dropout is 0: train mode changes nothing else
    m.activation_checkpointing_enable()
    x = ids(2, 8)
    with torch.no_grad():
        prefix = m(x[:, :7], use_cache=True)
        step = m(x[:, 7:], cache=prefix.cache, use_cache=True).logits[:, -1]
        whole = m(x).logits[:, -1]
    assert prefix.cache.get_seq_length() == 8  # the prompt and the step: both went into the cache
    torch.testing.assert_close(step, whole, atol=1e-5, rtol=1e-4)
    m(x, labels=x).loss.backward()  # with gradients the blocks are recomputed: no cache to fill twice
    assert m(x, use_cache=True).cache is None


def test_logits_to_keep_as_positions(model):
    x = ids()
    with torch.no_grad():
        every = model(x).logits
        kept = model(x, logits_to_keep=torch.tensor([0, 5, 11])).logits
        last = model(x, logits_to_keep=1).logits
    assert kept.shape == (2, 3, 128) and last.shape == (2, 1, 128)
    torch.testing.assert_close(kept, every[:, [0, 5, 11]])
    torch.testing.assert_close(last, every[:, -1:])


def test_eager_attention_gives_sdpas_logits_and_returns_weights():
    x = ids()
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    eager = small_model(attn_implementation="eager")
    sdpa = small_model()
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    with torch.no_grad():
        a = eager(x, attention_mask=mask, output_attentions=True)
        b = sdpa(x, attention_mask=mask)
    torch.testing.assert_close(a.logits[mask.bool()], b.logits[mask.bool()], atol=1e-5, rtol=1e-4)
    assert b.attentions is None and len(a.attentions) == 2
    weights = a.attentions[0]  # (B, Hq, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 12))
    assert weights[0, :, 3:, :3].abs().max() == 0  # padding is never attended
    assert weights[1].triu(1).abs().max() == 0  # nor the future


@pytest.mark.parametrize("implementation", ["eager", "flex_attention"])
def test_every_attention_implementation_gives_the_same_logits(implementation):
    """transformers builds each one its own form of mask (additive, BlockMask) from the same inputs."""
    x = ids()
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    other, sdpa = small_model(attn_implementation=implementation), small_model()
    assert other.config._attn_implementation == implementation
    with torch.no_grad():
        for kwargs in ({}, {"attention_mask": mask}):
            real = kwargs.get("attention_mask", torch.ones_like(x)).bool()
            torch.testing.assert_close(other(x, **kwargs).logits[real], sdpa(x, **kwargs).logits[real],
                                       atol=1e-5, rtol=1e-4)


def test_sdpa_goes_through_transformers_which_repeats_kv_heads_under_a_mask():
    from transformers.integrations.sdpa_attention import use_gqa_in_sdpa
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from minimind_lib.model import attention_function

    attn = small_model().model.layers[0].self_attn
    k = torch.randn(1, 2, 5, 16)  # (B, Hkv, S, D)
    assert attention_function(attn, output_attentions=False) is ALL_ATTENTION_FUNCTIONS["sdpa"]
    # so on CUDA a padded or packed batch takes a fast kernel, not SDPA's math kernel
    assert not use_gqa_in_sdpa(torch.ones(1, 1, 5, 5, dtype=torch.bool), k, k) and use_gqa_in_sdpa(None, k, k)


def test_yarn_frequencies_match_transformers():
    yarn = {"factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1}
    ours, our_scale = rope_inv_freq(small_config(yarn_scaling=yarn, rope_theta=10000.0))
    llama = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=256,
                        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, **yarn})
    theirs, their_scale = ROPE_INIT_FUNCTIONS["yarn"](llama, "cpu")
    torch.testing.assert_close(ours, theirs.float())
    assert our_scale == pytest.approx(their_scale)


def test_reward_head_scores_last_real_token():
    torch.manual_seed(0)
    rm = MiniMindForSequenceClassification(small_config(num_labels=1)).eval()
    x = ids(1, 6)
    padded = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], 1)  # pad id 0 on the right
    assert rm(padded).logits.shape == (1, 1)
    torch.testing.assert_close(rm(padded).logits, rm(x).logits)


def test_auto_class_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(again, MiniMindForCausalLM)
    assert again.config.auto_map == {}  # trl's reference-model reload needs a mapping
