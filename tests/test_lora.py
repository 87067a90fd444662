"""LoRA with peft on our model, as 04_sft runs it with `LORA=True`: SFTTrainer trains only the
adapters, their number is r * (d_in + d_out) per linear layer, and the merged model is a plain
checkpoint (same logits as the adapted model) that the export turns into a Llama checkpoint
plain `AutoModelForCausalLM` loads."""

from __future__ import annotations

import torch
from conftest import small_model, small_tokenizer
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM
from trl import SFTConfig, SFTTrainer

from minimind_lib.export import export
from minimind_lib.model import MiniMindForCausalLM

RANK = 4


def lora_config() -> LoraConfig:
    return LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def conversations() -> Dataset:
    rows = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                          {"role": "assistant", "content": f"{a} plus {b} equals {a + b}."}]}
            for a in range(6) for b in range(6)]
    return Dataset.from_list(rows)


def test_lora_trains_only_the_adapters_and_merges_into_a_plain_checkpoint(tmp_path):
    tok = small_tokenizer()
    model = small_model(vocab_size=len(tok)).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    by_hand = sum(RANK * (m.in_features + m.out_features) for m in linears)

    args = SFTConfig(output_dir=str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=8,
                     learning_rate=1e-2, assistant_only_loss=True, max_length=64, packing=False,
                     activation_checkpointing=False, use_cpu=True, report_to=[], save_strategy="no",
                     disable_tqdm=True, bf16=False)  # fp32, as 04 trains on a CPU: exact comparisons
    trainer = SFTTrainer(model=model, args=args, train_dataset=conversations(), processing_class=tok,
                         peft_config=lora_config())
    trainable, _ = trainer.model.get_nb_trainable_parameters()
    assert trainable == by_hand
    trainer.train()

    adapted = trainer.model.eval()
    # the weights under the adapters did not move; the adapters did (B starts at zero)
    base = {n.replace(".base_layer", ""): p for n, p in adapted.get_base_model().named_parameters()
            if "lora_" not in n}
    assert base.keys() == frozen.keys()
    assert all(torch.equal(base[n].detach(), before) for n, before in frozen.items())
    assert any(float(p.detach().abs().max()) > 0 for n, p in adapted.named_parameters() if "lora_B" in n)

    ids = torch.tensor([tok("What is 2 plus 3?")["input_ids"]])
    with torch.no_grad():
        expected = adapted(input_ids=ids).logits
        merged = adapted.merge_and_unload()
        assert type(merged) is MiniMindForCausalLM
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
        assert not torch.allclose(merged(input_ids=ids).logits, small_model(vocab_size=len(tok))(input_ids=ids).logits)

    merged.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(tmp_path / "merged")
    reloaded = MiniMindForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    llama = AutoModelForCausalLM.from_pretrained(export(tmp_path / "merged", tmp_path / "llama")).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.allclose(llama(input_ids=ids).logits, expected, atol=1e-4)
