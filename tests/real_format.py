"""A small dataset in MiniMind's four real file formats, for testing the real-data code path.

Everyday bilingual text written for the project (not the synthetic world), in the schemas and
with the quirks of MiniMind's files: chat markers inside pretraining text, system turns,
multi-turn chats, texts far longer than a context, emoji and other characters beyond the
Basic Multilingual Plane, Chinese-only and English-only documents, and RLAIF conversations
ending with the assistant placeholder. `write(dest)` writes the four files deterministically.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from minimind_lib.profiles import DATA_FILES

ZH = [
    "北京是中国的首都。", "水在一百摄氏度时沸腾。", "地球绕着太阳转，一年转一圈。", "一周有七天。",
    "熊猫主要吃竹子。", "黄河是中国第二长的河流。", "长城有两千多年的历史。", "今天天气很好，我们去公园散步吧。",
    "苹果、香蕉和橙子都是常见的水果。", "学习编程需要耐心和练习。", "多喝水对身体有好处。", "月亮本身不发光。",
    "秋天的时候，树叶会变黄。", "图书馆里要保持安静。", "早睡早起身体好。", "三角形的内角和是一百八十度。",
    "上海是一座港口城市。", "饺子是北方常见的食物。", "骑自行车既环保又健康。", "读书可以开阔眼界。",
]  # fmt: skip
EN = [
    "Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level.",
    "The Earth orbits the Sun once a year.", "A week has seven days.", "Plants need sunlight to grow.",
    "The Pacific is the largest ocean on Earth.", "Bees help flowers make seeds.", "Ice is frozen water.",
    "Reading every day builds a good vocabulary.", "A triangle has three sides.", "Cats sleep for much of the day.",
    "Exercise keeps the heart healthy.", "The Moon does not make its own light.", "Rain falls from clouds.",
    "London is on the River Thames.", "Fresh vegetables are good for you.", "Trains can carry many people at once.",
    "Learning a language takes practice.", "Spiders have eight legs.", "The library is a quiet place to study.",
]  # fmt: skip
EMOJI = ["😀", "🎉", "👍", "🌏", "🍜", "📚", "𠀀", "𝄞"]  # the last two: a CJK Extension B character, a musical symbol
QUESTIONS = [
    ("zh", "中国的首都是哪里？", "中国的首都是北京。"),
    ("zh", "一周有几天？", "一周有七天。"),
    ("zh", "熊猫吃什么？", "熊猫主要吃竹子。"),
    ("zh", "请介绍一下你自己。", "我是一个小型语言模型，可以回答简单的问题。"),
    ("zh", "3 加 4 等于几？", "3 加 4 等于 7。"),
    ("en", "What is the capital of France?", "The capital of France is Paris."),
    ("en", "How many legs does a spider have?", "A spider has eight legs."),
    ("en", "At what temperature does water boil?", "Water boils at 100 degrees Celsius at sea level."),
    ("en", "What is 12 plus 7?", "12 plus 7 equals 19."),
    ("en", "Can you tell me about yourself?", "I am a small language model that answers simple questions."),
]
SYSTEM = {"zh": "你是一个乐于助人的助手。", "en": "You are a helpful assistant."}
PLACEHOLDER = "无"  # MiniMind's RLAIF files end with an assistant turn holding it


def _sentences(rng: random.Random, lang: str, k: int) -> str:
    pool = ZH if lang == "zh" else EN
    return ("" if lang == "zh" else " ").join(rng.choice(pool) for _ in range(k))


def pretrain_rows(rng: random.Random, count: int = 300) -> list[dict]:
    rows = []
    for i in range(count):
        kind = i % 6
        if kind == 0:  # Chinese only
            text = _sentences(rng, "zh", rng.randint(2, 6))
        elif kind == 1:  # English only
            text = _sentences(rng, "en", rng.randint(2, 6))
        elif kind == 2:  # both, with emoji and characters beyond the BMP
            text = _sentences(rng, "zh", 2) + rng.choice(EMOJI) + " " + _sentences(rng, "en", 2) + rng.choice(EMOJI)
        elif kind == 3:  # chat markers inside the text, as in pretrain_hq.jsonl
            lang, question, answer = rng.choice(QUESTIONS)
            text = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>"
        elif kind == 4:  # far longer than a context
            text = _sentences(rng, rng.choice(["zh", "en"]), rng.randint(80, 160))
        else:  # a line with numbers
            a, b = rng.randint(1, 50), rng.randint(1, 50)
            text = f"{a} + {b} = {a + b}。" if rng.random() < 0.5 else f"{a} plus {b} equals {a + b}."
        rows.append({"text": text + f" ({i})"})  # the number keeps every document different
    return rows


def _exchange(rng: random.Random) -> list[dict]:
    lang, question, answer = rng.choice(QUESTIONS)
    if rng.random() < 0.2:
        answer += rng.choice(EMOJI)
    if rng.random() < 0.1:  # a long reply
        answer += _sentences(rng, lang, 40)
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def sft_rows(rng: random.Random, count: int = 300) -> list[dict]:
    rows = []
    for _ in range(count):
        turns = [{"role": "system", "content": SYSTEM[rng.choice(["zh", "en"])]}] if rng.random() < 0.3 else []
        for _ in range(rng.choice([1, 1, 2, 3])):  # multi-turn chats
            turns += _exchange(rng)
        rows.append({"conversations": turns})
    return rows


def dpo_rows(rng: random.Random, count: int = 260) -> list[dict]:
    rows = []
    for _ in range(count):
        lang, question, answer = rng.choice(QUESTIONS)
        worse = answer
        while worse == answer:  # a worse reply: a refusal, or an unrelated sentence
            worse = rng.choice(["不知道。" if lang == "zh" else "I don't know.", _sentences(rng, lang, 1)])
        prompt = [{"role": "system", "content": SYSTEM[lang]}] if rng.random() < 0.2 else []
        prompt.append({"role": "user", "content": question})
        rows.append({"chosen": prompt + [{"role": "assistant", "content": answer}],
                     "rejected": prompt + [{"role": "assistant", "content": worse}]})
    return rows


def rlaif_rows(rng: random.Random, count: int = 200) -> list[dict]:
    rows = []
    for _ in range(count):
        lang, question, _ = rng.choice(QUESTIONS)
        rows.append({"conversations": [{"role": "user", "content": question},
                                       {"role": "assistant", "content": PLACEHOLDER}]})
    return rows


def write(dest: str | Path, seed: int = 0) -> dict[str, Path]:
    """The four files under `dest`, named as MiniMind names them; the same seed, the same bytes."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    builders = {"pretrain": pretrain_rows, "sft": sft_rows, "dpo": dpo_rows, "rlaif": rlaif_rows}
    paths = {}
    for kind, build in builders.items():
        paths[kind] = dest / DATA_FILES[kind]
        with open(paths[kind], "w", encoding="utf-8", newline="\n") as f:
            for row in build(rng):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths
