"""Export to the standard Llama architecture: same logits without this library."""

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import small_model

from minimind_lib.export import export, main

torch.set_num_threads(1)


def save_small(tmp_path, **kw):
    model = small_model(**kw)
    src = tmp_path / "src"
    model.save_pretrained(src)
    return model, src


@pytest.mark.parametrize("yarn", [None, {"factor": 2.0, "original_max_position_embeddings": 64}])
def test_exported_llama_gives_same_logits_in_a_process_without_minimind(tmp_path, yarn):
    model, src = save_small(tmp_path, yarn_scaling=yarn)
    dst = export(src, tmp_path / "llama")
    x = torch.randint(3, 128, (2, 20))
    torch.save(x, tmp_path / "x.pt")
    torch.save(model(x).logits.detach(), tmp_path / "want.pt")
    code = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModelForCausalLM
        m = AutoModelForCausalLM.from_pretrained({str(dst)!r}).eval()
        assert type(m).__name__ == "LlamaForCausalLM", type(m)
        got = m(torch.load({str(tmp_path / "x.pt")!r})).logits
        torch.testing.assert_close(got, torch.load({str(tmp_path / "want.pt")!r}), atol=1e-5, rtol=1e-4)
        assert "minimind_lib" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_moe_checkpoint_is_refused_clearly(tmp_path, capsys):
    _, src = save_small(tmp_path, use_moe=True)
    assert main([str(src), str(tmp_path / "out")]) == 1
    assert "mixture-of-experts" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_source_and_same_directory_are_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 1
    assert "no config.json" in capsys.readouterr().err
    _, src = save_small(tmp_path)
    assert main([str(src), str(src)]) == 1
    assert "must differ" in capsys.readouterr().err


def test_text_generation_pipeline_on_saved_and_exported_checkpoints(tmp_path):
    from transformers import pipeline

    from minimind_lib.tokenizer import train_tokenizer

    tok = train_tokenizer(["the capital of Vomia is Bel. 首都是贝尔。 1 + 2 = 3."] * 50, vocab_size=300)
    model, src = save_small(tmp_path, vocab_size=len(tok))
    tok.save_pretrained(src)
    prompt = "the capital of"
    want = model.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=8, do_sample=False)
    want_text = tok.decode(want[0], skip_special_tokens=True)
    for directory in (src, export(src, tmp_path / "llama")):
        generate = pipeline("text-generation", model=str(directory))
        out = generate(prompt, max_new_tokens=8, do_sample=False)[0]["generated_text"]
        assert out == want_text, (directory, out, want_text)


def test_hidden_states_and_attention_weights_are_llamas(tmp_path):
    """output_hidden_states / output_attentions follow Llama's conventions: the input of each
    block then the final normed state; each layer's weights (B, Hq, T, S)."""
    from transformers import LlamaForCausalLM

    model, src = save_small(tmp_path)
    llama = LlamaForCausalLM.from_pretrained(export(src, tmp_path / "llama"), attn_implementation="eager").eval()
    x = torch.randint(3, 128, (2, 9))
    mask = torch.tensor([[0, 0] + [1] * 7, [1] * 9])  # left padding
    with torch.no_grad():
        ours = model(x, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        theirs = llama(x, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 3
    real = mask.bool()
    for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
        torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=1e-4)
    assert len(ours.attentions) == 2 and ours.attentions[0].shape == (2, 4, 9, 9)
    for a, b in zip(ours.attentions, theirs.attentions, strict=True):
        torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=1e-4)  # the unpadded row
        torch.testing.assert_close(a[0, :, 2:], b[0, :, 2:], atol=1e-5, rtol=1e-4)  # real queries
