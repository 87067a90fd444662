"""Fast paths (speed.py): same losses, logits and greedy tokens as the plain eager model."""

import pytest
import torch

from minimind_lib import speed
from minimind_lib.model import MiniMindConfig, MiniMindForCausalLM, attention_mask_4d
from minimind_lib.profiles import FULL, TINY

torch.set_num_threads(1)


def small_model(seed=0, **kw) -> MiniMindForCausalLM:
    base = dict(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    base.update(kw)
    torch.manual_seed(seed)
    return MiniMindForCausalLM(MiniMindConfig(**base)).eval()


def ids(batch=2, length=10, seed=1):
    return torch.randint(3, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


# ---- the switch -------------------------------------------------------------------------------
def test_switch_defaults_to_full_only(monkeypatch):
    monkeypatch.delenv(speed.ENV, raising=False)
    assert speed.enabled(FULL) and not speed.enabled(TINY) and not speed.enabled(None)
    monkeypatch.setenv(speed.ENV, "0")
    assert not speed.enabled(FULL)
    monkeypatch.setenv(speed.ENV, "1")
    assert speed.enabled(TINY)
    monkeypatch.setenv(speed.ENV, "maybe")
    with pytest.raises(ValueError, match="MINIMIND_FAST"):
        speed.enabled(FULL)


def test_training_kwargs_add_the_fast_path_and_keep_the_rest(monkeypatch):
    monkeypatch.delenv(speed.ENV, raising=False)
    base = dict(output_dir="x", optim="adamw_torch", bf16=False, use_cpu=True)
    assert speed.training_kwargs(TINY, **base) == base  # off: unchanged
    fast = speed.training_kwargs(FULL, **base)
    assert (
        fast["torch_compile"] and fast["optim"] == "adamw_torch_fused" and fast["output_dir"] == "x"
    )
    assert fast["bf16"] == speed.bf16_supported("cpu")
    assert (
        speed.training_kwargs(FULL, optim="adamw_bnb_8bit")["optim"] == "adamw_bnb_8bit"
    )  # 8-bit stays


def test_trainer_accepts_the_fast_arguments(tmp_path):
    from transformers import Trainer, TrainingArguments

    kwargs = speed.training_kwargs(FULL, output_dir=str(tmp_path), use_cpu=True, report_to=[])
    kwargs.pop("torch_compile")  # compiling is what the benchmark measures; here: the rest is valid
    trainer = Trainer(model=small_model(), args=TrainingArguments(**kwargs))
    optimizer = trainer.create_optimizer()
    assert optimizer.defaults["fused"] is True


# ---- the model with a static cache ------------------------------------------------------------
def test_a_4d_mask_is_used_as_given():
    model = small_model()
    x = ids()
    mask2d = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], [1] * 10])
    mask4d = attention_mask_4d(mask2d, 10, 10, x.device)
    pos = (mask2d.cumsum(-1) - 1).clamp(min=0)
    want = model(x, attention_mask=mask2d, position_ids=pos).logits
    got = model(x, attention_mask=mask4d, position_ids=pos).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_padding_mask_does_not_split_the_compiled_graph():
    """Trainers pass an attention mask (SFT, DPO, GRPO batches): one graph, same logits."""
    model = small_model().eval()
    x = ids()
    for mask in (torch.ones_like(x), torch.tensor([[0, 0] + [1] * 8, [1] * 10])):
        explained = torch._dynamo.explain(model)(x, attention_mask=mask)
        assert explained.graph_break_count == 0, explained.break_reasons
        with torch.no_grad():
            want = model(x, attention_mask=mask).logits
            got = torch.compile(model, backend="eager")(x, attention_mask=mask).logits
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("bf16", [False, True])
def test_decode_weights_give_bit_identical_logits(bf16):
    """Stacked q/k/v and gate/up (and bf16 copies under autocast): the same numbers."""
    model = small_model()
    weights = speed.decode_weights(model, bf16)
    assert "model.layers.0.self_attn.qkv_weight" in weights
    assert "model.layers.0.mlp.gate_up_weight" in weights
    assert ("lm_head.weight" in weights) == bf16 and "model.embed_tokens.weight" not in weights
    for batch in (1, 2):
        x = ids(batch, 1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            want = model(x).logits
            got = torch.func.functional_call(model, weights, (x,), tie_weights=False, strict=False).logits
        assert torch.equal(got, want)
    # The model itself is untouched: no stacked weights left behind, fp32 embedding.
    assert model.model.layers[0].self_attn.qkv_weight is None
    assert model.model.embed_tokens.weight.dtype == torch.float32
    assert "model.layers.0.self_attn.qkv_weight" not in model.state_dict()


@pytest.mark.parametrize("bf16", [False, True])
def test_static_cache_greedy_matches_generate(bf16):
    """Left padding, and a stop token that ends one row early: the same tokens as generate."""
    model = small_model()
    short, long = ids(1, 5, seed=2), ids(1, 9, seed=3)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    mask = (torch.arange(9) >= torch.tensor([[4], [0]])).long()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        ref = model.generate(
            batch, attention_mask=mask, max_new_tokens=16, do_sample=False, pad_token_id=0
        )
        stop = int(ref[0, 12])  # row 0's 4th new token: row 0 stops there (or earlier)
        kw = dict(attention_mask=mask, max_new_tokens=16, pad_token_id=0, eos_token_id=[stop, 127])
        want = model.generate(batch, do_sample=False, **kw)
        got = speed.greedy_generate(model, batch, compile=False, **kw)
    assert torch.equal(got, want)
    new0 = got[0, 9:].tolist()
    end = new0.index(stop)
    assert end <= 3 and all(t == 0 for t in new0[end + 1 :])  # row 0 stopped early, then padding


def test_min_new_tokens_holds_back_the_stop_token():
    model = small_model()
    x = ids(1, 6)
    with torch.no_grad():
        first = int(model.generate(x, max_new_tokens=1, do_sample=False, pad_token_id=0)[0, -1])
        kw = dict(max_new_tokens=8, min_new_tokens=3, pad_token_id=0, eos_token_id=first)
        want = model.generate(x, do_sample=False, **kw)
    got = speed.greedy_generate(model, x, compile=False, **kw)
    assert torch.equal(got, want) and got.shape[1] >= 6 + 3


@pytest.mark.slow  # compiling takes 15-80 s on 2 busy CPU cores (once per shape and precision)
def test_compiled_decode_step_gives_the_same_tokens():
    """One process, several compiled variants in turn: each call must run the right one.

    After its first step, `greedy_generate` skips the guards that do not tell compiled
    variants apart; going back to an earlier shape, or to other weights, must still give
    the tokens of `generate`."""
    models = {0: small_model(), 1: small_model(seed=1)}
    for seed, batch, bf16 in [(0, 2, False), (0, 1, False), (0, 2, True), (1, 2, False), (0, 1, True)]:
        model, x = models[seed], ids(batch, 6, seed=batch)
        kw = dict(max_new_tokens=12, min_new_tokens=12, pad_token_id=0)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            want = model.generate(x, do_sample=False, **kw)
            got = speed.greedy_generate(model, x, compile=True, **kw)
        assert torch.equal(got, want), (seed, batch, bf16)


# ---- the compiled training step ---------------------------------------------------------------
@pytest.mark.slow  # compiling forward + backward takes 20-90 s on 2 busy CPU cores
def test_compiled_training_step_matches_eager_loss_and_gradients():
    eager, compiled = small_model().train(), small_model().train()
    fast = torch.compile(compiled)
    x = ids(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = eager(x, labels=x).loss
        got = fast(x, labels=x).loss
    want.backward()
    got.backward()
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)  # bf16 products, fused differently
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        cos = torch.nn.functional.cosine_similarity(p.grad.flatten(), q.grad.flatten(), dim=0)
        assert cos > 0.99, (name, cos)
