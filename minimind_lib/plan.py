"""The plan a training notebook shows before its first step: data, model, steps, compute, time
and memory, so a run on the full dataset is sized before it starts.

Every number is an estimate, and the table says which:
- tokens: the mean tokens of a sample of rows (`data.sample_file`) times the rows; exact when
  the sample is the whole file. A row counts as the trainer sees it: truncated to `seq_len`
  (SFT, DPO), packed (pretraining), prompt + `completion_len` (GRPO).
- compute: 6·N·T FLOPs to train N parameters on T tokens (forward 2·N·T, backward 4·N·T;
  Kaplan et al. 2020), attention's own T² term left out (small at these lengths). DPO adds the
  frozen reference model's forward (2·N·T); its notebook also trains a reward model on the same
  pairs (6·N·T). GRPO adds the reference forward and the generation, 2·N a generated token.
- time: FLOPs / (devices x peak bf16 FLOP/s x an assumed utilisation, 40%). The peak of a known
  GPU comes from NVIDIA's datasheets; any other device is timed on a quick matmul. On a GPU, a
  note says when a forward/backward pass is so short that fixed costs a step dominate (a model
  as small as MiniMind2-Small), with the time at 10 ms more a pass.
- memory a device: fp32 weights, gradients and AdamW states (8-bit AdamW: 2 bytes a parameter),
  a frozen reference when there is one, and the activations of one micro-batch, about
  (34·hidden·layers + 10·vocab) bytes a token in bf16 (Korthikanti et al. 2022 for a layer;
  the logits, their fp32 copy and gradient for the vocabulary term); twice that in fp32 (a CPU
  off the fast path). A CPU's peak is timed in the precision the run uses: fp32, or bf16 on the
  fast path.
"""

from __future__ import annotations

import functools
import math
import re
import time
from dataclasses import dataclass, field

UTILISATION = 0.4  # share of the peak a well-tuned run reaches (assumed)
PACKED_FILL = 0.9  # share of a packed SFT row that is conversation (0.89 measured, bench/sft_packing.py)

# Peak dense bf16 tensor-core TFLOP/s (no 2:4 sparsity, which training does not use), from
# NVIDIA's datasheets and architecture whitepapers (they print the sparse figure, twice these).
# GeForce cards: with fp32 accumulation, what mixed-precision training uses. Matched in order
# against torch.cuda.get_device_name(), e.g. "NVIDIA H100 80GB HBM3", "Tesla T4".
GPU_PEAKS: list[tuple[str, str, float, str]] = [
    (r"H100.*NVL", "H100 NVL", 835, "NVIDIA H100 datasheet: 1,671 TFLOPS with sparsity"),
    (r"H100.*PCIe", "H100 PCIe", 756, "NVIDIA H100 datasheet: 1,513 TFLOPS with sparsity"),
    (r"H100", "H100 SXM", 989, "NVIDIA H100 datasheet: 1,979 TFLOPS with sparsity"),
    (r"H200.*NVL", "H200 NVL", 835, "NVIDIA H200 datasheet: 1,671 TFLOPS with sparsity"),
    (r"H200", "H200 SXM", 989, "NVIDIA H200 datasheet: 1,979 TFLOPS with sparsity"),
    (r"A100", "A100", 312, "NVIDIA A100 datasheet: 312 TFLOPS (624 with sparsity)"),
    (r"\bA10\b", "A10", 125, "NVIDIA A10 datasheet: 125 TFLOPS (250 with sparsity)"),
    (r"L40S", "L40S", 362, "NVIDIA L40S datasheet: 362 TFLOPS (733 with sparsity)"),
    (r"\bL4\b", "L4", 121, "NVIDIA L4 datasheet: 242 TFLOPS with sparsity"),
    (r"RTX 4090", "GeForce RTX 4090", 165.2,
     "NVIDIA Ada Lovelace whitepaper: 165.2 TFLOPS with fp32 accumulate (330.4 with sparsity)"),
    (r"RTX 3090", "GeForce RTX 3090", 71,
     "NVIDIA GA102 (Ampere) whitepaper: 71 TFLOPS with fp32 accumulate (142 with sparsity)"),
    (r"\bT4\b", "T4", 65, "NVIDIA T4 datasheet: 65 TFLOPS fp16 (no bf16 tensor cores)"),
]  # fmt: skip


# ---- the device -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceSpeed:
    name: str
    peak_flops: float  # FLOP/s of one device
    source: str  # where the number comes from
    cuda: bool = True

    def __str__(self) -> str:
        tera = self.peak_flops >= 1e12
        rate = f"{self.peak_flops / (1e12 if tera else 1e9):,.4g} {'T' if tera else 'G'}FLOP/s"
        return f"{self.name}: {rate} peak ({self.source})"


def gpu_peak(name: str) -> tuple[str, float, str] | None:
    """(label, peak bf16 FLOP/s, source) of a GPU known by its device name, else None."""
    for pattern, label, tflops, source in GPU_PEAKS:
        if re.search(pattern, name, re.IGNORECASE):
            return label, tflops * 1e12, source
    return None


def measure_matmul(device: str = "cpu", seconds: float = 0.1, bf16: bool = False) -> float:
    """FLOP/s of square matmuls timed for about `seconds`: bf16 on a GPU, fp32 on a CPU (bf16
    with `bf16`, the precision the CPU fast path trains in)."""
    import torch

    cuda = device.startswith("cuda")
    n = 4096 if cuda else 512
    dtype = torch.bfloat16 if cuda or bf16 else torch.float32
    g = torch.Generator(device).manual_seed(0)  # leaves the global random state alone
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a @ b  # warm-up
    sync()
    count, start = 0, time.perf_counter()
    while True:
        a @ b
        count += 1
        if count % 4 == 0:
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 2 * n**3 * count / elapsed


def device_speed(name: str | None = None, measure=measure_matmul, bf16: bool = False) -> DeviceSpeed:
    """The peak of the given device name (a GPU's), else of this machine's first device: a known
    GPU from the datasheet table, anything else timed with `measure(device)`. A GPU trains in
    bf16; a CPU in fp32, or in bf16 with `bf16` (the fast path, where the CPU has bf16 units)."""
    if name is None:
        return _detected_speed(bf16)
    known = gpu_peak(name)
    if known:
        label, flops, source = known
        return DeviceSpeed(label, flops, source + ", bf16 dense")
    if name == "cpu" and bf16:
        return DeviceSpeed("cpu", measure("cpu", bf16=True), "measured, bf16 matmul: the fast path's precision",
                           cuda=False)
    if name == "cpu":
        return DeviceSpeed("cpu", measure("cpu"), "measured, fp32 matmul", cuda=False)
    return DeviceSpeed(name, measure("cuda"), "measured, bf16 matmul: not in the datasheet table")


@functools.lru_cache(maxsize=2)
def _detected_speed(bf16: bool) -> DeviceSpeed:
    import torch

    if torch.cuda.is_available():
        return device_speed(torch.cuda.get_device_name(0))
    return device_speed("cpu", bf16=bf16)


# ---- the optimizer ---------------------------------------------------------------------------
def default_optimizer() -> str:
    """The Trainer's default `optim` (transformers picks it by torch version)."""
    from transformers import TrainingArguments

    return TrainingArguments.default_optim


def optimizer_choice(optim_8bit: bool, cuda: bool, default: str = "adamw_torch") -> tuple[str, str]:
    """(`optim` for the trainer arguments, why) for a notebook's OPTIM_8BIT: bitsandbytes' 8-bit
    AdamW on CUDA when asked, else `default`."""
    if not optim_8bit:
        return default, "the Trainer's default"
    if cuda:
        return "adamw_bnb_8bit", "OPTIM_8BIT: AdamW states in 8 bits (bitsandbytes)"
    return default, (
        "OPTIM_8BIT ignored on CPU: 8-bit states save GPU memory, and a CPU run of this course "
        "is bound by time, not memory"
    )


# ---- model and data -------------------------------------------------------------------------
def parameter_count(config) -> int:
    """Parameters of a MiniMindForCausalLM with `config`, built on the meta device (no memory)."""
    import torch

    from .model import MiniMindForCausalLM, count_parameters

    with torch.device("meta"):
        return count_parameters(MiniMindForCausalLM(config))


def row_tokens(kind: str, rows: list[dict], tokenizer, seq_len: int) -> list[int]:
    """Tokens the trainer processes for each converted row (see `data`'s loaders): a text plus
    its end-of-text token (pretrain, packed: no cut); a conversation cut at `seq_len` (sft); the
    chosen plus the rejected conversation, each cut at `seq_len` (dpo); the prompt (rlaif)."""
    if not rows:
        return []
    if kind == "pretrain":
        ids = tokenizer([r["text"] for r in rows], add_special_tokens=False)["input_ids"]
        return [len(x) + 1 for x in ids]

    def lengths(conversations, **kwargs) -> list[int]:
        enc = tokenizer.apply_chat_template(
            conversations, tokenize=True, return_dict=True, **kwargs
        )
        return [len(x) for x in enc["input_ids"]]

    if kind == "sft":
        return [min(n, seq_len) for n in lengths([r["messages"] for r in rows])]
    if kind == "dpo":
        chosen = lengths([r["prompt"] + r["chosen"] for r in rows])
        rejected = lengths([r["prompt"] + r["rejected"] for r in rows])
        return [min(c, seq_len) + min(r, seq_len) for c, r in zip(chosen, rejected, strict=True)]
    if kind == "rlaif":
        return lengths([r["prompt"] for r in rows], add_generation_prompt=True)
    raise ValueError(f"unknown kind {kind!r}")


def optimizer_steps(items: int, global_batch: int, max_steps: int | None, epochs: int = 1) -> int:
    """Optimizer steps of a run: `max_steps` when positive, else `epochs` passes over `items`
    (sequences, pairs, or replies) at `global_batch` a step, the last partial batch included."""
    if max_steps and max_steps > 0:
        return int(max_steps)
    return epochs * math.ceil(items / global_batch)


def training_flops(n_params: int, tokens: float, factor: float = 6.0) -> float:
    """`factor`·N·T: 6 for a forward and backward pass over T tokens, 2 for a forward only."""
    return factor * n_params * tokens


# ---- the plan -------------------------------------------------------------------------------
STAGE_KIND = {"pretrain": "pretrain", "sft": "sft", "dpo": "dpo", "grpo": "rlaif"}


ZH_NAMES = {"data": "数据", "tokens in the data": "数据中的词元", "model": "模型",
            "optimizer steps": "优化器步数", "tokens trained (T)": "训练词元 (T)", "compute": "计算量",
            "device": "设备", "time": "时间", "memory a device": "每个设备的内存", "optimizer": "优化器",
            "note": "注"}


@dataclass
class Plan:
    stage: str
    data: str  # what the rows line says
    rows: int
    tokens_per_row: float
    tokens_exact: bool
    sample_rows: int
    params: int
    steps: int
    steps_note: str
    global_batch: int
    processes: int
    tokens: float  # T: tokens trained on over the run
    flops: float
    flops_note: str
    device: DeviceSpeed
    utilisation: float
    memory: dict[str, float]  # bytes a device, by part
    optim: str
    optim_note: str
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.flops / (self.processes * self.device.peak_flops * self.utilisation)

    @property
    def memory_total(self) -> float:
        return sum(self.memory.values())

    def entries(self) -> list[tuple[str, str]]:
        approx = "" if self.tokens_exact else "≈ "
        how = "every row" if self.tokens_exact else f"a sample of {self.sample_rows:,} rows"
        unit, scale = ("GB", 1e9) if self.memory_total >= 1e9 else ("MB", 1e6)
        memory = " + ".join(f"{k} {v / scale:,.3g}" for k, v in self.memory.items() if v)
        rows = [
            ("data", self.data),
            ("tokens in the data", f"{approx}{_count(self.tokens_per_row * self.rows)} "
             f"({self.tokens_per_row:,.1f} a row, from {how})"),
            ("model", f"{_count(self.params)} parameters (N)"),
            ("optimizer steps", f"{self.steps:,} x {self.global_batch:,} a step ({self.steps_note})"),
            ("tokens trained (T)", f"{approx}{_count(self.tokens)}"),
            ("compute", f"{self.flops:.2e} FLOPs ({self.flops_note})"),
            ("device", f"{self.processes} x {self.device}"),
            ("time", f"≈ {_duration(self.seconds)} at {self.utilisation:.0%} of the peak"),
            ("memory a device", f"≈ {self.memory_total / scale:,.3g} {unit} ({memory})"),
            ("optimizer", f"{self.optim} ({self.optim_note})"),
        ]  # fmt: skip
        rows += [("note", n) for n in self.notes]
        return rows

    def table(self) -> str:
        rows = self.entries()
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

    def __str__(self) -> str:
        return self.table()

    def _repr_markdown_(self) -> str:  # the notebooks' table: bilingual row names
        lines = [f"| {self.stage} 计划 · {self.stage} plan | 估计 · estimate |", "|---|---|"]
        lines += [f"| {ZH_NAMES.get(k, k)} · {k} | {v.replace('|', '/')} |" for k, v in self.entries()]
        return "\n".join(lines)


def training_plan(
    profile,
    stage: str,
    report,
    tokenizer,
    model,
    *,
    rows: int | None = None,
    max_steps: int | None = None,
    processes: int | None = None,
    optim_8bit: bool = False,
    num_generations: int = 8,
    completion_len: int | None = None,
    with_reward_model: bool = True,
    packed: bool = False,
    device: DeviceSpeed | None = None,
    bf16: bool | None = None,
    utilisation: float = UTILISATION,
) -> Plan:
    """The plan of one stage (pretrain, sft, dpo, grpo) of `profile`.

    report: the `data.sample_file` / `data.check_file` report of the stage's file (rows, sample);
    model: the model or its parameter count; rows: the rows trained on, when not the whole file
    (a held-out split); max_steps: the notebook's MAX_STEPS (None: the profile's budget);
    processes: devices training together (default: this run's); num_generations and
    completion_len: GRPO's G and reply length (default: the profile's seq_len);
    with_reward_model: DPO's notebook also trains a reward model on the same pairs;
    packed: SFT on packed rows (packing.py), about PACKED_FILL of each row used;
    bf16: the run computes in bf16 (default: on a GPU, and on a CPU when the fast path is on and
    the CPU has bf16 units, as `speed.training_kwargs` decides): the peak and the activations
    follow.
    """
    from .runtime import split_batch, world_size

    if stage not in STAGE_KIND:
        raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGE_KIND)}")
    kind = STAGE_KIND[stage]
    budget = getattr(profile, stage)
    dims = profile.model
    processes = processes or world_size()
    if isinstance(model, int):
        n = model
    else:
        from .model import count_parameters

        n = count_parameters(model)
    if bf16 is None:
        from . import speed

        bf16 = speed.enabled(profile) and speed.bf16_supported()
    if device is None:
        device = device_speed(bf16=bf16)
    cuda = device.cuda
    rows = report.rows if rows is None else rows
    lengths = row_tokens(kind, report.sample, tokenizer, budget.seq_len)
    per_row = sum(lengths) / len(lengths) if lengths else 0.0
    exact = report.complete and len(lengths) == report.rows
    batch = budget.batch_size * budget.grad_accum  # sequences (pairs, replies) an optimizer step
    steps_cap = max_steps or (budget.max_steps if budget.max_steps > 0 else None)
    per_device, accum = split_batch(budget.batch_size, budget.grad_accum, processes)
    notes: list[str] = []
    act_per_token = 34 * dims.hidden_size * dims.num_hidden_layers + 10 * dims.vocab_size
    if not (cuda or bf16):
        act_per_token *= 2  # fp32 activations without bf16 autocast
    reference = kv = 0.0
    if stage == "pretrain":
        sequences = int(per_row * rows) // budget.seq_len  # packed blocks
        steps = optimizer_steps(sequences, batch, steps_cap)
        tokens = steps * batch * budget.seq_len
        flops, flops_note = training_flops(n, tokens), "6·N·T"
        micro_tokens = per_device * budget.seq_len
        data_items = f"{sequences:,} packed sequences of {budget.seq_len} tokens"
    elif stage in ("sft", "dpo"):
        items, per_item = rows, per_row
        data_items = f"{rows:,} {'pairs' if stage == 'dpo' else 'conversations'}"
        if stage == "sft" and packed:  # whole conversations in rows of seq_len: fewer, fuller rows
            items = min(rows, math.ceil(rows * per_row / (budget.seq_len * PACKED_FILL)))
            per_item = rows * per_row / max(items, 1)
            data_items += f" in about {items:,} packed rows"
        steps = optimizer_steps(items, batch, steps_cap)
        tokens = steps * batch * per_item
        if stage == "sft":
            flops, flops_note = training_flops(n, tokens), "6·N·T"
            micro_tokens = per_device * budget.seq_len
        else:
            flops = training_flops(n, tokens, 8)
            flops_note = "8·N·T: policy forward + backward 6, frozen reference forward 2"
            if with_reward_model:
                flops += training_flops(n, tokens)
                flops_note += "; + 6·N·T for the reward model of section 9"
            micro_tokens = per_device * 2 * budget.seq_len  # chosen and rejected rows
            reference = 4.0 * n
    else:  # grpo
        completion_len = completion_len or budget.seq_len
        replies = rows * num_generations
        steps = optimizer_steps(replies, batch, steps_cap)
        per_reply = per_row + completion_len
        tokens = steps * batch * per_reply
        generated = steps * batch * completion_len
        flops = training_flops(n, tokens, 8) + training_flops(n, generated, 2)
        flops_note = (
            "8·N·T on prompt + reply: policy forward + backward 6, reference forward 2; "
            "+ 2·N a generated token"
        )
        longest_prompt = max(lengths, default=0)
        micro_tokens = per_device * (longest_prompt + completion_len)
        reference = 4.0 * n
        gen_batch = math.lcm(num_generations, batch) // processes  # replies generated a device
        kv_bytes = 2 * dims.num_key_value_heads * (dims.hidden_size // dims.num_attention_heads) * 2
        kv = gen_batch * (longest_prompt + completion_len) * dims.num_hidden_layers * kv_bytes
        data_items = (
            f"{rows:,} prompts x {num_generations} replies of up to {completion_len} tokens"
        )
        notes.append(
            "GRPO generates token by token, bound by memory bandwidth rather than FLOPs: "
            "expect the real time to be several times this"
        )
    default = default_optimizer()
    optim, optim_note = optimizer_choice(optim_8bit, cuda, default)
    eight_bit = optim == "adamw_bnb_8bit"
    memory = {
        "weights": 4.0 * n,  # fp32 master weights (bf16 autocast computes in bf16)
        "gradients": 4.0 * n,
        "AdamW 8-bit" if eight_bit else "AdamW": (2.0 if eight_bit else 8.0) * n,  # 2 states
        "reference": reference,
        "activations": micro_tokens * act_per_token,
        "KV cache": kv,
    }
    seconds = flops / (processes * device.peak_flops * utilisation)
    micro = seconds / max(steps * accum, 1)  # compute time of one forward/backward pass
    if cuda and micro < 0.01:
        notes.append(
            f"time: a forward/backward pass is only {micro * 1e3:.1g} ms of compute here; fixed "
            "costs a pass (kernel launches, the optimizer, data loading: often 10 ms or more) "
            "dominate a model this small: at 10 ms more a pass, "
            f"≈ {_duration(seconds + steps * accum * 0.01)}"
        )
    if cuda:
        notes.append("memory: add about 1 GB for the CUDA context and the allocator")
    checked = "every row checked" if report.complete else f"{report.checked:,} rows checked"
    data_line = f"{_shown(report.path)}: {report.rows:,} rows ({checked}); {data_items}"
    steps_note = (
        f"MAX_STEPS = {max_steps}" if max_steps
        else "the profile's budget" if budget.max_steps > 0 else "one epoch"
    )  # fmt: skip
    return Plan(
        stage=stage, data=data_line, rows=rows, tokens_per_row=per_row, tokens_exact=exact,
        sample_rows=len(lengths), params=n, steps=steps, steps_note=steps_note,
        global_batch=batch, processes=processes, tokens=tokens, flops=flops,
        flops_note=flops_note, device=device, utilisation=utilisation, memory=memory,
        optim=optim, optim_note=optim_note, notes=notes,
    )  # fmt: skip


# ---- formatting -------------------------------------------------------------------------------
def _count(x: float) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= size:
            return f"{x / size:,.2f}{suffix}"
    return f"{x:,.0f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _shown(path) -> str:
    from .profiles import ROOT

    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)
