"""The embedded synthetic dataset: a small invented bilingual world in MiniMind's four schemas.

Twenty-four invented countries, each with a zh and an en name, a capital, a national
animal, a flag colour and a favourite food, plus additions.
`generate` writes, deterministically for a seed:

  pretrain_hq.jsonl    facts, sums, short stories, bilingual glossaries, classroom dialogues
  sft_mini_512.jsonl   chats asking facts and sums in zh or en; the assistant answers in the
                       user's language only half of the time: the flaw DPO fixes
  dpo.jsonl            chosen = the right answer in the user's language, rejected = the same
                       answer in the other language
  rlaif-mini.jsonl     fact questions and two-step sums ending with an assistant placeholder,
                       as in MiniMind; the verifiable answers are in
  rlaif_answers.jsonl  {"answer": ["panda", "熊猫"], "mentions": ["Dalaland", "达拉兰"],
                       "lang": "en"}: every accepted answer and the names a reply must
                       mention (the country asked about), aligned line by line
  sft_tools.jsonl      chats that call a `lookup` tool (MiniMind-3's `tools`, `tool_calls`
                       and `tool` turns), half of them plain chats without tools: for your
                       own SFT runs; 07 walks one through (the tiny course does not train on
                       them)
  eval_*.jsonl         held-out probes (see `eval_sets`); world.json (the world, what is held
                       out); VERSION (the stamp `ensure_dataset` compares)

About 20% of the facts are never asked as a question in any training file (they are only
stated in the pretraining text), and 30% of the two-step sums a + b + c with no zero operand
never appear in any training file at all: the eval sets are built from those. Another 25% of
the facts are asked only in the RLAIF prompts, in one of their five phrasings: SFT never shows
how to answer them, so GRPO has questions the model gets right only some of the time, and
learns from which replies were right; the other four phrasings test what it learned. The
other 55% are asked in SFT and DPO; fewer would not do: with 38 asked facts, SFT's replies
named the wrong country (fact QA 10% in one run, against 50% with 53 asked facts). The
addition table itself (0-9 + 0-9) is all in the training text, like a times table
learned by heart; about a third of the two-step sums in the pretraining text, and every SFT
reply and DPO pair about one, write the two steps out.

No evaluation item occurs in a training file, exactly or after normalisation
(`heldout.normalise`): the pretraining documents are all different (a repeated document
could land on both sides of 03's held-out split), and the completion probes also use
phrasings of the facts that no training text uses (`UNSEEN_STATEMENTS`).

The sizes and the mix follow what a ~1M-parameter model picks up in the tiny profile's
budget (900 pretraining steps of 32 x 64 tokens, about 4.4 passes over the 12,000 documents):
four relations of 24 countries are memorised in that budget (600 steps left a third of the
canonical sentences unlearned); more relations, or more sums in the mix, were not.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from .data import DOWNLOAD_COMMAND, DataError
from .heldout import normalise
from .profiles import DATA_FILES

VERSION = "3"
VERSION_FILE = "VERSION"
PLACEHOLDER = "无"  # MiniMind's RLAIF files end with an assistant turn holding a placeholder

N_COUNTRIES = 24
N_PRETRAIN = 12_000
N_SFT = 4_000
N_DPO = 2_000
N_RLAIF = 2_000
N_TOOL_SFT = 2_000
TOOL_CHAT_SHARE = 0.5  # of the tool file: chats that call the tool; the rest are plain chats
HELD_OUT_FACT_SHARE = 0.21  # facts never asked in training: the QA probes
RL_FACT_SHARE = 0.26  # facts asked only in the RLAIF prompts, and only in the phrasings below
RL_QUESTIONS = (0,)  # the question phrasing RLAIF asks them in; the RL probe asks in the other four
HELD_OUT_SUM_SHARE = 0.3  # of the two-step sums without a zero operand: the sums probes
SFT_SAME_LANGUAGE_RATE = 0.5  # how often an SFT reply is in the user's language
SYSTEM_RATE = 0.2  # share of SFT / DPO conversations that start with a system message
MAX_OPERAND = 9  # the addition table: a + b with 0 <= a, b <= MAX_OPERAND
WORKED_RATE = 0.3  # how often a two-step sum in the pretraining text shows its working
# Every SFT reply to a two-step sum shows its working (so do the DPO pairs): measured over two
# seeds, held-out sums after SFT went from 0-9% (a third of the replies worked) to 9% both times.
SFT_WORKED_RATE = 1.0
LANGS = ("en", "zh")

# ---- the world's vocabulary: (en, zh) ---------------------------------------------------
SYLLABLES = [
    ("ba", "巴"), ("bo", "波"), ("da", "达"), ("do", "多"), ("ka", "卡"),
    ("ko", "科"), ("la", "拉"), ("lo", "洛"), ("ma", "玛"), ("mo", "莫"),
    ("na", "纳"), ("no", "诺"), ("sa", "萨"), ("so", "索"), ("ta", "塔"),
    ("to", "托"), ("va", "瓦"), ("vo", "沃"), ("ri", "瑞"), ("mi", "米"),
]  # fmt: skip
COUNTRY_ENDINGS = [
    ("ria", "里亚"),
    ("land", "兰"),
    ("nia", "尼亚"),
    ("stan", "斯坦"),
    ("via", "维亚"),
]
CAPITAL_ENDINGS = [("vik", "维克"), ("dun", "敦"), ("burg", "堡"), ("ton", "顿"), ("mere", "梅尔")]
VALUES = {
    "animal": [
        ("tiger", "老虎"), ("panda", "熊猫"), ("wolf", "狼"), ("eagle", "老鹰"), ("fox", "狐狸"),
        ("deer", "鹿"), ("camel", "骆驼"), ("owl", "猫头鹰"), ("horse", "马"), ("rabbit", "兔子"),
        ("whale", "鲸鱼"), ("crane", "仙鹤"),
    ],
    "colour": [
        ("red", "红色"), ("blue", "蓝色"), ("green", "绿色"), ("yellow", "黄色"),
        ("white", "白色"), ("black", "黑色"), ("purple", "紫色"), ("orange", "橙色"),
    ],
    "food": [
        ("noodles", "面条"), ("dumplings", "饺子"), ("bread", "面包"), ("fish soup", "鱼汤"),
        ("honey cake", "蜂蜜蛋糕"), ("apples", "苹果"), ("cheese", "奶酪"), ("porridge", "粥"),
        ("corn", "玉米"), ("pancakes", "煎饼"),
    ],
}  # fmt: skip
RELATIONS = ("capital", "animal", "colour", "food")

# ---- templates: {c} country, {v} value; the first statement is the canonical reply -----
STATEMENTS = {
    "capital": {
        "en": ["The capital of {c} is {v}.", "{v} is the capital of {c}.",
               "The capital city of {c} is called {v}.", "People in {c} call {v} their capital."],
        "zh": ["{c}的首都是{v}。", "{v}是{c}的首都。", "{c}的首都叫{v}。", "{c}人把{v}叫作首都。"],
    },
    "animal": {
        "en": ["The national animal of {c} is the {v}.", "The {v} is the national animal of {c}.",
               "In {c}, the {v} is the national animal.",
               "Every child in {c} knows that the {v} is their national animal."],
        "zh": ["{c}的国兽是{v}。", "{v}是{c}的国兽。", "在{c}，国兽是{v}。", "{c}的孩子都知道国兽是{v}。"],
    },
    "colour": {
        "en": ["The flag of {c} is {v}.", "The flag {c} flies is {v}.", "The colour of the {c} flag is {v}.",
               "People in {c} wave {v} flags on holidays."],
        "zh": ["{c}的国旗是{v}的。", "{c}有一面{v}的国旗。", "{c}国旗的颜色是{v}。",
               "{c}人在节日里挥舞{v}的旗子。"],
    },
    "food": {
        "en": ["The favourite food in {c} is {v}.", "People in {c} love to eat {v}.",
               "In {c}, everyone eats {v}.", "The people of {c} like {v} best."],
        "zh": ["{c}人最爱吃的食物是{v}。", "{c}人很喜欢吃{v}。", "在{c}，人人都吃{v}。",
               "{v}是{c}人最爱的食物。"],
    },
}  # fmt: skip
QUESTIONS = {
    "capital": {
        "en": ["What is the capital of {c}?", "Which city is the capital of {c}?",
               "Tell me the capital of {c}.", "Do you know the capital of {c}?", "Name the capital of {c}."],
        "zh": ["{c}的首都是哪里？", "{c}的首都是哪座城市？", "请告诉我{c}的首都。", "你知道{c}的首都吗？", "说出{c}的首都。"],
    },
    "animal": {
        "en": ["What is the national animal of {c}?", "Which animal is the national animal of {c}?",
               "Tell me the national animal of {c}.", "Do you know the national animal of {c}?",
               "Name the national animal of {c}."],
        "zh": ["{c}的国兽是什么？", "{c}的国兽是哪种动物？", "请告诉我{c}的国兽。", "你知道{c}的国兽吗？", "说出{c}的国兽。"],
    },
    "colour": {
        "en": ["What colour is the flag of {c}?", "What is the colour of the {c} flag?",
               "Tell me the colour of the flag of {c}.", "Do you know the colour of the {c} flag?",
               "Name the colour of the {c} flag."],
        "zh": ["{c}的国旗是什么颜色？", "{c}国旗的颜色是什么？", "请告诉我{c}国旗的颜色。", "你知道{c}国旗的颜色吗？",
               "说出{c}国旗的颜色。"],
    },
    "food": {
        "en": ["What is the favourite food in {c}?", "What do people in {c} love to eat?",
               "Tell me the favourite food of {c}.", "Do you know the favourite food of {c}?",
               "Name the favourite food of {c}."],
        "zh": ["{c}人最爱吃什么？", "{c}人最爱吃的食物是什么？", "请告诉我{c}人最爱的食物。", "你知道{c}人最爱的食物吗？",
               "说出{c}人最爱的食物。"],
    },
}  # fmt: skip
# Phrasings of the facts that no training file uses: the completion probe asks with these
# too, to tell a memorised sentence from a fact the model can state in other words.
UNSEEN_STATEMENTS = {
    "capital": {
        "en": ["Ask anyone in {c} about their capital city and they will say {v}.",
               "Among all the cities of {c}, the capital is {v}."],
        "zh": ["问任何一个{c}人首都在哪里，他都会说是{v}。", "在{c}的所有城市中，首都是{v}。"],
    },
    "animal": {
        "en": ["Ask anyone in {c} about their national animal and they will say the {v}.",
               "Among all the animals of {c}, the national animal is the {v}."],
        "zh": ["问任何一个{c}人国兽是什么，他都会说是{v}。", "在{c}的所有动物中，国兽是{v}。"],
    },
    "colour": {
        "en": ["Ask anyone in {c} about the colour of their flag and they will say {v}.",
               "Among all the flags of {c}, the national flag is {v}."],
        "zh": ["问任何一个{c}人国旗是什么颜色，他都会说是{v}。", "在{c}的所有旗子中，国旗一直是{v}的。"],
    },
    "food": {
        "en": ["Ask anyone in {c} about their favourite food and they will say {v}.",
               "Among all the foods of {c}, the favourite is {v}."],
        "zh": ["问任何一个{c}人他们最喜欢的食物，他都会说是{v}。", "在{c}的所有食物中，人们最爱的是{v}。"],
    },
}  # fmt: skip

# Sums: {a} {b} {c} operands, {s} the sum. zh keeps spaces around numbers, as Chinese
# typesetting often does; math-verify also only finds a number that stands apart.
SUM_STATEMENTS = {
    "en": ["{a} plus {b} equals {s}.", "{a} + {b} = {s}.", "Adding {a} and {b} gives {s}.",
           "The sum of {a} and {b} is {s}."],
    "zh": ["{a} 加 {b} 等于 {s}。", "{a} + {b} = {s}。", "{a} 与 {b} 的和是 {s}。", "把 {a} 和 {b} 加起来得到 {s}。"],
}  # fmt: skip
SUM_QUESTIONS = {
    "en": ["What is {a} plus {b}?", "What is {a} + {b}?", "How much is {a} plus {b}?",
           "Please add {a} and {b}."],
    "zh": ["{a} 加 {b} 等于多少？", "{a} + {b} 等于几？", "请计算 {a} 加 {b}。", "{a} 和 {b} 的和是多少？"],
}  # fmt: skip
TRIPLE_STATEMENTS = {
    "en": ["{a} plus {b} plus {c} equals {s}.", "{a} + {b} + {c} = {s}."],
    "zh": ["{a} 加 {b} 加 {c} 等于 {s}。", "{a} + {b} + {c} = {s}。"],
}
# A two-step sum with its working: both steps are pairs of the addition table, so a model that
# knows the table can get a sum it never saw right by writing the steps out.
WORKED_STATEMENTS = {
    "en": "{a} + {b} = {ab}, then {ab} + {c} = {s}.",
    "zh": "{a} 加 {b} 等于 {ab}，{ab} 加 {c} 等于 {s}。",  # Han characters: its language shows
}
TRIPLE_QUESTIONS = {
    "en": [
        "What is {a} plus {b} plus {c}?",
        "What is {a} + {b} + {c}?",
        "Please add {a}, {b} and {c}.",
    ],
    "zh": [
        "{a} 加 {b} 加 {c} 等于多少？",
        "{a} + {b} + {c} 等于几？",
        "请计算 {a} 加 {b} 加 {c}。",
    ],
}

SYSTEM_PROMPTS = {
    "en": ["You are a helpful assistant.", "Answer briefly."],
    "zh": ["你是一个有用的助手。", "请简短回答。"],
}  # fmt: skip
PEOPLE = {
    "en": ["Lina", "Tom", "Mia", "Sam", "Ada", "Leo"],
    "zh": ["小林", "小明", "小红", "阿华", "小美", "小杰"],
}
STORY_OPENINGS = {
    "en": ["{p} travelled to {c1} and {c2}.", "Last summer {p} visited {c1}, then {c2}.",
           "{p} wrote a letter about a trip to {c1} and {c2}."],
    "zh": ["{p}去{c1}和{c2}旅行。", "去年夏天，{p}先去了{c1}，又去了{c2}。", "{p}写了一封信，讲去{c1}和{c2}的旅行。"],
}  # fmt: skip
STORY_CLOSINGS = {
    "en": [
        "{p} was happy to come home.",
        "It was a wonderful trip.",
        "{p} wants to go back one day.",
    ],
    "zh": ["{p}高高兴兴地回家了。", "这是一次很棒的旅行。", "{p}想以后再去一次。"],
}
NAME_GLOSSARY = {
    "en": "{c_en} is called {c_zh} in Chinese, and its capital {v_en} is called {v_zh}.",
    "zh": "{c_zh}的英文名是{c_en}，它的首都{v_zh}的英文名是{v_en}。",
    "mixed": "{c_zh}（{c_en}）的首都是{v_zh}（{v_en}）。",
}
VALUE_GLOSSARY = {"en": "In Chinese, {v_en} is {v_zh}.", "zh": "{v_zh}的英文是{v_en}。"}
DIALOGUE = {"en": "Teacher: {q} Student: {a}", "zh": "老师：{q}学生：{a}"}

# Kinds of pretraining text and their shares.
PRETRAIN_MIX = {"facts": 0.4, "story": 0.15, "sums": 0.25, "glossary": 0.1, "dialogue": 0.1}


# ---- the world --------------------------------------------------------------------------
@dataclass(frozen=True)
class Name:
    en: str
    zh: str

    def __getitem__(self, lang: str) -> str:
        return getattr(self, lang)


@dataclass(frozen=True)
class Fact:
    country: Name
    relation: str
    value: Name

    @property
    def key(self) -> tuple[str, str]:
        return (self.country.en, self.relation)

    @property
    def statements(self) -> dict[str, list[str]]:
        return STATEMENTS[self.relation]

    @property
    def questions(self) -> dict[str, list[str]]:
        return QUESTIONS[self.relation]

    def statement(self, lang: str, template: int = 0) -> str:
        return self.statements[lang][template].format(c=self.country[lang], v=self.value[lang])

    def question(self, lang: str, template: int) -> str:
        return self.questions[lang][template].format(c=self.country[lang])

    def probe(self, lang: str, template: str | None = None) -> str:
        """A statement cut before the value: what pretraining should complete. By default the
        canonical statement (a sentence the pretraining text contains)."""
        template = template or self.statements[lang][0]
        return template.split("{v}")[0].format(c=self.country[lang]).rstrip()

    def unseen_probes(self, lang: str) -> list[str]:
        """The same cut of the phrasings no training text uses (`UNSEEN_STATEMENTS`)."""
        return [self.probe(lang, t) for t in UNSEEN_STATEMENTS[self.relation][lang]]


@dataclass(frozen=True)
class Sum:
    operands: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.operands)

    @property
    def statements(self) -> dict[str, list[str]]:
        return SUM_STATEMENTS if len(self.operands) == 2 else TRIPLE_STATEMENTS

    @property
    def questions(self) -> dict[str, list[str]]:
        return SUM_QUESTIONS if len(self.operands) == 2 else TRIPLE_QUESTIONS

    def _fill(self, template: str) -> str:
        return template.format(**dict(zip("abc", self.operands, strict=False)), s=self.total)

    def statement(self, lang: str, template: int = 0) -> str:
        return self._fill(self.statements[lang][template])

    def question(self, lang: str, template: int) -> str:
        return self._fill(self.questions[lang][template])

    def worked(self, lang: str) -> str:
        """A two-step sum written out step by step: "3 + 4 = 7, then 7 + 5 = 12." """
        a, b, c = self.operands
        return WORKED_STATEMENTS[lang].format(a=a, b=b, c=c, ab=a + b, s=self.total)


@dataclass
class World:
    countries: list[dict]  # {"name": Name, "capital": Name, "animal": Name, ...}
    facts: list[Fact]
    held_out_facts: list[Fact]  # stated in pretraining, never asked in any training file
    rl_facts: list[Fact]  # asked only in the RLAIF prompts
    sums: list[Sum]  # training additions, two and three operands
    held_out_sums: list[Sum]  # two-step sums without a zero operand, never in any training file

    @property
    def asked_facts(self) -> list[Fact]:
        not_asked = {f.key for f in self.held_out_facts + self.rl_facts}
        return [f for f in self.facts if f.key not in not_asked]

    @property
    def pair_sums(self) -> list[Sum]:
        return [s for s in self.sums if len(s.operands) == 2]

    @property
    def triple_sums(self) -> list[Sum]:
        return [s for s in self.sums if len(s.operands) == 3]


def _parts_apart(parts: list, other: list) -> int:
    """How many name parts differ; names of different lengths count as far apart."""
    if len(parts) != len(other):
        return len(parts)
    return sum(a != b for a, b in zip(parts, other, strict=True))


def _invent_names(
    rng: random.Random, endings, count: int, syllables: tuple[int, int], taken: list[Name]
) -> list[Name]:
    """Unique names of 1-2 syllables and an ending, none a substring of another (zh or en).

    Two names of the same length differ in at least two parts, so a small model cannot mix
    them up by one syllable (Dalaland / Damiland).
    """
    names: list[Name] = []
    kept_parts: list[list[tuple[str, str]]] = []
    while len(names) < count:
        parts = [rng.choice(SYLLABLES) for _ in range(rng.randint(*syllables))]
        parts.append(rng.choice(endings))
        name = Name("".join(p[0] for p in parts).capitalize(), "".join(p[1] for p in parts))
        others = taken + names
        if any(name.en.lower() in o.en.lower() or o.en.lower() in name.en.lower() for o in others):
            continue
        if any(name.zh in o.zh or o.zh in name.zh for o in others):
            continue
        if any(_parts_apart(parts, k) < 2 for k in kept_parts):
            continue
        names.append(name)
        kept_parts.append(parts)
    return names


def _fact(country: dict, relation: str) -> Fact:
    return Fact(country["name"], relation, country[relation])


def build_world(seed: int = 42) -> World:
    rng = random.Random(seed)
    country_names = _invent_names(rng, COUNTRY_ENDINGS, N_COUNTRIES, (2, 2), [])
    capitals = _invent_names(rng, CAPITAL_ENDINGS, N_COUNTRIES, (1, 2), country_names)
    countries = []
    for name, capital in zip(country_names, capitals, strict=True):
        country = {"name": name, "capital": capital}
        for relation, values in VALUES.items():
            country[relation] = Name(*rng.choice(values))
        countries.append(country)
    facts = [_fact(country, relation) for country in countries for relation in RELATIONS]
    held_out_facts = rng.sample(facts, round(HELD_OUT_FACT_SHARE * len(facts)))
    held_out_facts.sort(key=facts.index)
    rest = [f for f in facts if f not in held_out_facts]
    rl_facts = sorted(rng.sample(rest, round(RL_FACT_SHARE * len(facts))), key=facts.index)

    pair_sums = [Sum(p) for p in product(range(MAX_OPERAND + 1), repeat=2)]
    # Two-step sums (a + b) + c whose both steps are in the addition table. The held-out ones
    # have no zero operand: "0 + 2 + 4" is a one-step sum in disguise.
    triples = [Sum(t) for t in product(range(MAX_OPERAND + 1), repeat=3) if t[0] + t[1] <= MAX_OPERAND]
    no_zero = [t for t in triples if 0 not in t.operands]
    held_triples = rng.sample(no_zero, round(HELD_OUT_SUM_SHARE * len(no_zero)))
    held_triple_set = set(held_triples)
    triple_sums = [t for t in triples if t not in held_triple_set]
    held_triples.sort(key=lambda s: s.operands)
    return World(
        countries, facts, held_out_facts, rl_facts, pair_sums + triple_sums, held_triples
    )


# ---- pretraining texts ------------------------------------------------------------------
def _other(lang: str) -> str:
    return "zh" if lang == "en" else "en"


def _shows_working(rng: random.Random, item: Fact | Sum, rate: float = WORKED_RATE) -> bool:
    return isinstance(item, Sum) and len(item.operands) == 3 and rng.random() < rate


def _random_statement(rng: random.Random, item: Fact | Sum, lang: str) -> str:
    if _shows_working(rng, item):
        return item.worked(lang)
    return item.statement(lang, rng.randrange(len(item.statements[lang])))


def _reply(rng: random.Random, item: Fact | Sum, lang: str) -> str:
    """A chat reply: the canonical statement, or for some two-step sums the working."""
    return item.worked(lang) if _shows_working(rng, item, SFT_WORKED_RATE) else item.statement(lang)


def _random_question(rng: random.Random, item: Fact | Sum, lang: str) -> str:
    return item.question(lang, rng.randrange(len(item.questions[lang])))


def _join(lang: str, sentences: list[str]) -> str:
    return (" " if lang == "en" else "").join(sentences)


def _facts_text(rng: random.Random, world: World, lang: str) -> str:
    country = rng.choice(world.countries)
    relations = rng.sample(RELATIONS, rng.randint(2, 3))  # never one sentence: that is a chat reply
    return _join(lang, [_random_statement(rng, _fact(country, r), lang) for r in relations])


def _story_text(rng: random.Random, world: World, lang: str) -> str:
    first, second = rng.sample(world.countries, 2)
    person = rng.choice(PEOPLE[lang])
    sentences = [
        rng.choice(STORY_OPENINGS[lang]).format(
            p=person, c1=first["name"][lang], c2=second["name"][lang]
        )
    ]
    for country in (first, second):
        sentences.append(_random_statement(rng, _fact(country, rng.choice(RELATIONS)), lang))
    sentences.append(rng.choice(STORY_CLOSINGS[lang]).format(p=person))
    return _join(lang, sentences)


def _sums_text(rng: random.Random, world: World, lang: str) -> str:
    sentences = []
    for _ in range(rng.randint(2, 4)):
        pool = world.triple_sums if rng.random() < 0.2 else world.pair_sums
        sentences.append(_random_statement(rng, rng.choice(pool), lang))
    return _join(lang, sentences)


def _glossary_entry(rng: random.Random, world: World, lang: str) -> str:
    country = rng.choice(world.countries)
    if rng.random() < 0.5:
        relation = rng.choice(RELATIONS[1:])
        return VALUE_GLOSSARY[lang].format(v_en=country[relation].en, v_zh=country[relation].zh)
    template = NAME_GLOSSARY["mixed" if rng.random() < 0.3 else lang]
    name, capital = country["name"], country["capital"]
    return template.format(c_en=name.en, c_zh=name.zh, v_en=capital.en, v_zh=capital.zh)


def _glossary_text(rng: random.Random, world: World, lang: str) -> str:
    return _join(lang, [_glossary_entry(rng, world, lang) for _ in range(rng.randint(2, 3))])


def _dialogue_text(rng: random.Random, world: World, lang: str) -> str:
    """A classroom exchange in plain text; only about facts and sums that are not held out."""
    exchanges = []
    for _ in range(rng.randint(1, 2)):
        item = rng.choice(world.asked_facts) if rng.random() < 0.7 else rng.choice(world.pair_sums)
        exchanges.append(DIALOGUE[lang].format(q=_random_question(rng, item, lang), a=item.statement(lang)))
    return _join(lang, exchanges)


_PRETRAIN_WRITERS = {
    "facts": _facts_text,
    "story": _story_text,
    "sums": _sums_text,
    "glossary": _glossary_text,
    "dialogue": _dialogue_text,
}


def pretrain_texts(rng: random.Random, world: World, count: int = N_PRETRAIN) -> list[str]:
    """`count` documents, no two the same after `heldout.normalise` (a drawn document that
    repeats an earlier one is drawn again)."""
    # One fact sheet per country and language, so every canonical statement occurs at least once.
    texts = [
        _join(lang, [_fact(c, r).statement(lang) for r in RELATIONS])
        for c in world.countries
        for lang in LANGS
    ]
    seen = {normalise(t) for t in texts}
    kinds, weights = zip(*PRETRAIN_MIX.items(), strict=True)
    while len(texts) < count:
        kind = rng.choices(kinds, weights)[0]
        text = _PRETRAIN_WRITERS[kind](rng, world, rng.choice(LANGS))
        if normalise(text) not in seen:
            seen.add(normalise(text))
            texts.append(text)
    rng.shuffle(texts)
    return texts


# ---- chats ------------------------------------------------------------------------------
def _message(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _system(rng: random.Random) -> list[dict]:
    if rng.random() >= SYSTEM_RATE:
        return []
    return [_message("system", rng.choice(SYSTEM_PROMPTS[rng.choice(LANGS)]))]


def _exchange(rng: random.Random, item: Fact | Sum, lang: str) -> list[dict]:
    """A user question in `lang` and the reply, in the user's language only half of the time."""
    question = _random_question(rng, item, lang)
    reply_lang = lang if rng.random() < SFT_SAME_LANGUAGE_RATE else _other(lang)
    return [_message("user", question), _message("assistant", _reply(rng, item, reply_lang))]


def _chat_item(rng: random.Random, world: World) -> Fact | Sum:
    draw = rng.random()
    if draw < 0.6:
        return rng.choice(world.asked_facts)
    return rng.choice(world.triple_sums if draw < 0.76 else world.pair_sums)


def sft_conversations(rng: random.Random, world: World, count: int = N_SFT) -> list[dict]:
    rows = []
    for _ in range(count):
        messages = _system(rng) + _exchange(rng, _chat_item(rng, world), rng.choice(LANGS))
        if rng.random() < 0.1:  # a follow-up question, often in the other language
            messages += _exchange(rng, rng.choice(world.pair_sums), rng.choice(LANGS))
        rows.append({"conversations": messages})
    return rows


def _preference(item: Fact | Sum, question: str, lang: str) -> tuple[list[dict], dict, dict]:
    """The same answer in the user's language (chosen) and in the other one (rejected); a
    two-step sum with its working, as SFT answers it."""
    def answer(in_lang: str) -> str:
        worked = isinstance(item, Sum) and len(item.operands) == 3 and SFT_WORKED_RATE == 1.0
        return item.worked(in_lang) if worked else item.statement(in_lang)

    return [_message("user", question)], _message("assistant", answer(lang)), _message("assistant", answer(_other(lang)))


def dpo_pairs(rng: random.Random, world: World, count: int = N_DPO) -> list[dict]:
    rows = []
    for _ in range(count):
        item, lang = _chat_item(rng, world), rng.choice(LANGS)
        prompt, chosen, rejected = _preference(item, _random_question(rng, item, lang), lang)
        prompt = _system(rng) + prompt
        rows.append({"chosen": prompt + [chosen], "rejected": prompt + [rejected]})
    return rows


def rlaif_prompts(
    rng: random.Random, world: World, count: int = N_RLAIF
) -> tuple[list[dict], list[dict]]:
    """Half questions about the RL-only facts (in the `RL_QUESTIONS` phrasings; an answer in
    either language is accepted), half two-step sums."""
    rows, answers = [], []
    for _ in range(count):
        item = rng.choice(world.rl_facts) if rng.random() < 0.5 else rng.choice(world.triple_sums)
        lang = rng.choice(LANGS)
        question = item.question(lang, rng.choice(RL_QUESTIONS)) if isinstance(item, Fact) else _random_question(rng, item, lang)
        rows.append({"conversations": [_message("user", question), _message("assistant", PLACEHOLDER)]})
        if isinstance(item, Sum):
            answers.append({"answer": [str(item.total)], "mentions": [], "operands": list(item.operands),
                            "lang": lang})
        else:  # the reply must name the country asked about and its value, in either language
            country = [item.country[lang], item.country[_other(lang)]]
            answers.append({"answer": [item.value[lang], item.value[_other(lang)]], "mentions": country,
                            "operands": [], "lang": lang})
    return rows, answers


# ---- a tool ----------------------------------------------------------------------------
# A short schema: on the tiny tokenizer, JSON punctuation costs about a token a character.
LOOKUP_TOOL = {
    "name": "lookup",
    "description": "a fact about a country",
    "parameters": {"country": "string", "relation": "|".join(RELATIONS)},
}


def lookup(world: World, country: str, relation: str) -> str:
    """The tool itself: a fact of the world, in the language the country is named in (zh or
    en), or a short error the model reads back as the tool's result."""
    for c in world.countries:
        for lang in LANGS:
            if c["name"][lang] == country:
                if relation not in RELATIONS:
                    return f"unknown relation {relation!r}; one of {', '.join(RELATIONS)}"
                return c[relation][lang]
    return f"unknown country {country!r}"


def tool_exchange(fact: Fact, question: str, lang: str) -> list[dict]:
    """A question answered through the tool: the call (no text around it), the tool's result,
    then the canonical statement in the user's language."""
    call = {"name": LOOKUP_TOOL["name"],
            "arguments": {"country": fact.country[lang], "relation": fact.relation}}
    return [
        {"role": "system", "content": "", "tools": [LOOKUP_TOOL]},
        _message("user", question),
        {"role": "assistant", "content": "", "tool_calls": [call]},
        _message("tool", fact.value[lang]),
        _message("assistant", fact.statement(lang)),
    ]


def tool_conversations(rng: random.Random, world: World, count: int = N_TOOL_SFT) -> list[dict]:
    """Chats about the facts SFT asks (never a held-out or RL-only fact): with the tool for
    `TOOL_CHAT_SHARE` of them, and plain chats answered in the user's language otherwise, so
    the model also keeps answering without a tool when it is given none."""
    rows = []
    for _ in range(count):
        fact, lang = rng.choice(world.asked_facts), rng.choice(LANGS)
        question = _random_question(rng, fact, lang)
        if rng.random() < TOOL_CHAT_SHARE:
            messages = tool_exchange(fact, question, lang)
        else:
            messages = [_message("user", question), _message("assistant", fact.statement(lang))]
        rows.append({"conversations": messages})
    return rows


def tool_chats(seed: int = 42, world: World | None = None) -> list[dict]:
    """The rows of sft_tools.jsonl for a seed, without writing them (07 on any profile)."""
    # its own random stream: the other files stay what they were before it existed
    return tool_conversations(random.Random(seed + 2), world or build_world(seed))


def other_value(rng: random.Random, world: World, fact: Fact) -> Name:
    """A value of the fact's relation that is not its own: another country's capital, or
    another animal, colour or food."""
    if fact.relation == "capital":
        pool = [c["capital"] for c in world.countries]
    else:
        pool = [Name(*v) for v in VALUES[fact.relation]]
    return rng.choice([v for v in pool if v != fact.value])


def with_changed_results(rows: list[dict], world: World, share: float, seed: int) -> list[dict]:
    """The tool chats with `share` of their tool results changed to another value
    (`other_value`), and the final answer stating that value, as if the tool knew better.

    In `tool_chats` the result always agrees with what pretraining taught, so a model can
    answer from memory and never read it; in a changed chat only the result gives the right
    answer. New rows (the call and the question stay); `rows` are left as they were."""
    rng, countries = random.Random(seed), {}
    for c in world.countries:
        countries.update({c["name"].en: (c, "en"), c["name"].zh: (c, "zh")})
    changed = []
    for row in rows:
        messages = row["conversations"]
        if not (messages[0].get("tools") and rng.random() < share):
            changed.append(row)
            continue
        arguments = messages[2]["tool_calls"][0]["arguments"]
        country, lang = countries[arguments["country"]]
        fact = Fact(country["name"], arguments["relation"], country[arguments["relation"]])
        fact = Fact(fact.country, fact.relation, other_value(rng, world, fact))
        *start, _, _ = messages
        changed.append(
            {**row, "conversations": [*start, _message("tool", fact.value[lang]),
                                      _message("assistant", fact.statement(lang))]}
        )
    return changed


# ---- evaluation sets --------------------------------------------------------------------
def _group(item: Fact | Sum) -> str:
    """The label of the fact or sum an eval item asks about: items of one group are resampled
    together when a probe's interval is bootstrapped (`stats.Score`)."""
    if isinstance(item, Sum):
        return "+".join(map(str, item.operands))
    return f"{item.country.en}/{item.relation}"


def _fact_probe(f: Fact, lang: str, prompt: str, phrasing: str, held: set) -> dict:
    return {"prompt": prompt, "answer": f.value[lang], "lang": lang, "relation": f.relation,
            "country": f.country.en, "qa_held_out": f.key in held, "phrasing": phrasing, "group": _group(f)}


def _question_item(item: Fact | Sum, question: str, lang: str) -> dict:
    """A chat question with everything a grader needs: the accepted answers, and the names
    (the country asked about) or the operands a right reply must state."""
    row = {"messages": [_message("user", question)], "answer": item.value[lang] if isinstance(item, Fact)
           else str(item.total), "lang": lang, "group": _group(item)}
    if isinstance(item, Fact):
        row.update(answers={"en": item.value.en, "zh": item.value.zh}, relation=item.relation,
                   mentions=[item.country.en, item.country.zh])
    else:
        row.update(operands=list(item.operands), steps=len(item.operands) - 1)
    return row


def eval_sets(rng: random.Random, world: World) -> dict[str, list[dict]]:
    """Probes for each stage. No item here occurs in any training file (tests/test_heldout.py).

    eval_facts: completion prompts for every fact in both languages: the canonical statement
                cut before the value (phrasing "seen": pretraining contains that very sentence)
                and two phrasings no training text uses (phrasing "unseen"); `qa_held_out`
                marks facts never asked in training
    eval_qa:    questions about the held-out facts, every phrasing in both languages
    eval_rl_qa: questions about the RL-only facts in the phrasings RLAIF never uses: what GRPO
                learned about the facts it was rewarded on, asked in new words
    eval_dpo:   preference pairs (trl prompt/chosen/rejected) on the held-out facts (every
                phrasing) and the held-out sums (both languages)
    eval_math:  the held-out two-step sums, asked in both languages
    """
    held = {f.key for f in world.held_out_facts}
    facts = []
    for f in world.facts:
        for lang in LANGS:
            facts.append(_fact_probe(f, lang, f.probe(lang), "seen", held))
            facts += [_fact_probe(f, lang, prompt, "unseen", held) for prompt in f.unseen_probes(lang)]
    fact_questions = [(f, f.question(lang, t), lang) for f in world.held_out_facts for lang in LANGS
                      for t in range(len(f.questions[lang]))]
    sum_questions = [(s, _random_question(rng, s, lang), lang) for s in world.held_out_sums for lang in LANGS]
    qa = [_question_item(*q) for q in fact_questions]
    rl_unused = [t for t in range(len(QUESTIONS["capital"]["en"])) if t not in RL_QUESTIONS]
    rl_qa = [_question_item(f, f.question(lang, t), lang) for f in world.rl_facts for lang in LANGS for t in rl_unused]
    math = [_question_item(*q) for q in sum_questions]
    dpo = []
    for item, question, lang in fact_questions + sum_questions:
        prompt, chosen, rejected = _preference(item, question, lang)
        dpo.append({"prompt": prompt, "chosen": [chosen], "rejected": [rejected], "lang": lang,
                    "group": _group(item)})
    return {"eval_facts": facts, "eval_qa": qa, "eval_rl_qa": rl_qa, "eval_dpo": dpo, "eval_math": math}


def _world_summary(world: World) -> dict:
    def names(n: Name) -> dict:
        return {"en": n.en, "zh": n.zh}

    return {
        "countries": [{k: names(v) for k, v in c.items()} for c in world.countries],
        "held_out_facts": [
            {"country": f.country.en, "relation": f.relation} for f in world.held_out_facts
        ],
        "rl_facts": [{"country": f.country.en, "relation": f.relation} for f in world.rl_facts],
        "held_out_sums": [list(s.operands) for s in world.held_out_sums],
    }


# ---- writing ----------------------------------------------------------------------------
def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _stamp(seed: int) -> str:
    """What the data was made by: an edited generator also makes the stamp differ."""
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return f"minimind synthetic dataset v{VERSION}, seed {seed}, generator {source}\n"


OUTPUT_FILES = {
    **DATA_FILES,
    "rlaif_answers": "rlaif_answers.jsonl",
    "sft_tools": "sft_tools.jsonl",
    "eval_facts": "eval_facts.jsonl",
    "eval_qa": "eval_qa.jsonl",
    "eval_rl_qa": "eval_rl_qa.jsonl",
    "eval_dpo": "eval_dpo.jsonl",
    "eval_math": "eval_math.jsonl",
    "world": "world.json",
    "version": VERSION_FILE,
}


def generate(out_dir: str | Path, seed: int = 42) -> dict[str, Path]:
    """Write every file into `out_dir`; the same seed gives byte-identical files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in OUTPUT_FILES.items()}
    paths["version"].unlink(missing_ok=True)  # written last: its presence means "complete"
    world = build_world(seed)
    rng = random.Random(seed + 1)
    _write_jsonl(paths["pretrain"], [{"text": t} for t in pretrain_texts(rng, world)])
    _write_jsonl(paths["sft"], sft_conversations(rng, world))
    _write_jsonl(paths["dpo"], dpo_pairs(rng, world))
    rlaif, answers = rlaif_prompts(rng, world)
    _write_jsonl(paths["rlaif"], rlaif)
    _write_jsonl(paths["rlaif_answers"], answers)
    for name, rows in eval_sets(rng, world).items():
        _write_jsonl(paths[name], rows)
    _write_jsonl(paths["sft_tools"], tool_chats(seed, world))
    paths["world"].write_text(
        json.dumps(_world_summary(world), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    paths["version"].write_text(_stamp(seed), encoding="utf-8")
    return paths


def ensure_dataset(profile) -> Path:
    """The profile's data directory, generated first if missing or stale (synthetic profiles).

    For a profile on the real data, only checks that the four files are there.
    """
    data_dir = Path(profile.data_dir)
    if profile.data != "synthetic":
        missing = [
            profile.data_file(kind) for kind in DATA_FILES if not profile.data_file(kind).is_file()
        ]
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise DataError(
                f"missing real data file(s): {names}; fetch them with `{DOWNLOAD_COMMAND}`"
            )
        return data_dir
    stamp = data_dir / VERSION_FILE
    complete = all((data_dir / name).is_file() for name in OUTPUT_FILES.values())
    if not complete or stamp.read_text(encoding="utf-8") != _stamp(profile.data_seed):
        generate(data_dir, seed=profile.data_seed)
    return data_dir


def reply_language(text: str) -> str:
    """The language of a reply: "zh" when CJK characters are at least a quarter of its
    letters (CJK characters + ASCII letters), else "en"; digits and punctuation do not count."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "zh" if cjk and cjk / (cjk + latin) >= 0.25 else "en"
