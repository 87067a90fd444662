"""Fast paths (speed.py): same losses, logits and greedy tokens as the plain eager model."""

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import small_model
from transformers.masking_utils import create_causal_mask

from minimind_lib import speed
from minimind_lib.model import MiniMindAttention, MiniMindMLP
from minimind_lib.profiles import FULL, PROFILES, TINY
from minimind_lib.speed import matmul_attention

torch.set_num_threads(1)


def ids(batch=2, length=10, seed=1):
    return torch.randint(3, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


# ---- the switch -------------------------------------------------------------------------------
def test_switch_defaults_to_full_only(monkeypatch):
    monkeypatch.delenv(speed.ENV, raising=False)
    assert speed.enabled(FULL) and not speed.enabled(TINY) and not speed.enabled(None)
    assert not speed.enabled(PROFILES["laptop"])  # a CPU: compiling each new batch shape costs more
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
    mask4d = create_causal_mask(model.config, model.model.embed_tokens(x), mask2d, None)
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
@pytest.mark.parametrize("moe", [False, True])
def test_stacked_weights_give_bit_identical_logits(bf16, moe):
    """Stacked q/k/v and gate/up (and bf16 copies under autocast): the same numbers."""
    model = small_model(use_moe=moe)
    weights = speed.decode_weights(model, bf16)
    assert "model.layers.0.self_attn.qkv_weight" in weights
    mlp = "model.layers.0.mlp.experts.0" if moe else "model.layers.0.mlp"
    assert f"{mlp}.gate_up_weight" in weights
    assert ("lm_head.weight" in weights) == bf16 and "model.embed_tokens.weight" not in weights
    for batch in (1, 2):
        x = ids(batch, 1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            want = model(x).logits
            with speed.stacked_modules(model):
                assert type(model.model.layers[0].self_attn) is speed.StackedAttention
                got = torch.func.functional_call(model, weights, (x,), tie_weights=False, strict=False).logits
        assert torch.equal(got, want)
    # The model itself is untouched: its own classes, no stacked weights left behind, fp32 embedding.
    assert type(model.model.layers[0].self_attn) is MiniMindAttention
    assert not hasattr(model.model.layers[0].self_attn, "qkv_weight")
    assert model.model.embed_tokens.weight.dtype == torch.float32
    assert not any("qkv_weight" in name or "gate_up" in name for name in model.state_dict())


def test_stacked_modules_restores_the_classes_after_an_error():
    model = small_model()
    with pytest.raises(RuntimeError, match="inside"), speed.stacked_modules(model):
        raise RuntimeError("inside")
    assert type(model.model.layers[0].mlp) is MiniMindMLP


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


# ---- attention as two matrix products (compiled CPU training) ------------------------------------
def padded_rows(T):
    return torch.tensor([[0, 0, 0] + [1] * (T - 3), [1] * T])


def documents(T):
    """Position ids of two packed rows: documents of 4 and T - 4 tokens, and of 3, 3 and T - 6."""
    return torch.tensor([[*range(4), *range(T - 4)], [*range(3), *range(3), *range(T - 6)]])


def bool_mask(T, attention_mask=None, position_ids=None):
    """The (2, 1, T, T) boolean mask the model builds for SDPA (transformers' create_causal_mask)."""
    config = small_model().config
    return create_causal_mask(config, torch.zeros(2, T, 8), attention_mask, None, position_ids=position_ids)


@pytest.mark.parametrize("T", [10, 150])  # 150: query blocks of 64, 64 and 22 rows
@pytest.mark.parametrize("mask", [None, "padding", "documents"])
def test_matmul_attention_is_sdpa(mask, T):
    """Causal, padded and packed rows, 4 query heads on 2 key heads: what SDPA computes."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, h, T, 8, generator=g) for h in (4, 2, 2))
    if mask == "padding":
        mask = bool_mask(T, attention_mask=padded_rows(T))
    elif mask == "documents":
        mask = bool_mask(T, position_ids=documents(T))
    want = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True
    )
    for causal in (False, True):  # all keys, or only those up to each block of queries
        got = matmul_attention(q, k, v, mask, causal=causal)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_matmul_attention_keeps_a_given_mask_that_is_not_causal():
    """A 4-D mask passed in by the caller may show later keys: no block is skipped for it."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, 100, 8, generator=g) for h in (4, 2, 2))
    everything = torch.ones(1, 1, 100, 100, dtype=torch.bool)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=everything, enable_gqa=True)
    torch.testing.assert_close(matmul_attention(q, k, v, everything), want, rtol=1e-5, atol=1e-6)


def test_matmul_attention_only_for_compiled_cpu_training_shapes():
    q, k = torch.zeros(1, 4, 10, 8), torch.zeros(1, 2, 10, 8)
    assert not speed.use_matmul_attention(q, k)  # eager: SDPA
    compiled = torch.compile(speed.use_matmul_attention, backend="eager", fullgraph=True)
    assert compiled(q, k)
    assert not compiled(q[:, :, :1], k)  # a decoding step over cached keys
    long = speed.MATMUL_ATTENTION_MAX_LEN + 1
    assert not compiled(torch.zeros(1, 4, long, 8), torch.zeros(1, 2, long, 8))


@pytest.mark.parametrize("T", [10, 150])
@pytest.mark.parametrize("mask", [None, "padding", "documents"])
def test_compiled_model_attends_with_matmuls_and_matches_eager(mask, T, monkeypatch):
    """The whole model, forward and backward, through the path compiled CPU training takes."""
    traced = []

    def counting(*args, **kwargs):
        traced.append(kwargs["causal"])
        return matmul_attention(*args, **kwargs)

    monkeypatch.setattr(speed, "matmul_attention", counting)
    eager = small_model().train()
    compiled = speed.select_attention(small_model().train(), fast=True)  # what the fast path trains with
    assert compiled.config._attn_implementation == speed.MATMUL_ATTENTION == compiled.model.layers[0].self_attn.config._attn_implementation
    assert eager.config._attn_implementation == "sdpa" and speed.select_attention(small_model(), fast=False).config._attn_implementation == "sdpa"
    x = ids(length=T)
    kwargs = {}
    if mask == "padding":
        kwargs["attention_mask"] = padded_rows(T)
    if mask == "documents":
        kwargs["position_ids"] = documents(T)  # packed rows: positions restart, no attention mask
    want = eager(x, labels=x, **kwargs).loss
    # aot_eager: dynamo traces the model (the matmul path) and autograd, without inductor's kernels
    got = torch.compile(compiled, backend="aot_eager")(x, labels=x, **kwargs).loss
    assert traced == [True, True]  # once per layer, skipping the keys after each query block
    want.backward()
    got.backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for p, q in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


# ---- the C allocator keeps freed memory ----------------------------------------------------------
PAGE_FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    from minimind_lib import speed
    kept = speed.keep_freed_memory() if sys.argv[1] == "keep" else False
    def faults():
        x = torch.ones(64 * 2**20 // 4)  # a 64 MiB buffer written once, as a step's logits are
        del x
    for _ in range(3):  # steady state, as after a few training steps
        faults()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    faults()
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def new_page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PAGE_FAULTS, mode], capture_output=True, text=True, check=True
    )
    kept, faults = out.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_kept_memory_is_reused_without_page_faults():
    """By default a freed 64 MiB block goes back to the kernel and its 16,384 pages fault in
    again at the next allocation; with keep_freed_memory() the next allocation reuses them."""
    assert new_page_faults("default")[1] > 10_000
    kept, faults = new_page_faults("keep")
    assert kept == "True"
    assert faults < 1_000


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
