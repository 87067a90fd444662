"""A bilingual multiple-choice knowledge probe for models trained on real text.

119 questions, each asked in Chinese and in English (238 items): everyday facts, arithmetic and
common sense, written for this course. A question comes with four choices and no letters: the
model is never asked to pick "B". Instead every choice is scored as a continuation of the
question, the way evaluation harnesses score multiple choice without generation:

    score(choice) = log p(choice | "Question: ...\\nAnswer:") / UTF-8 bytes of the choice

and the model "answers" with the best-scoring choice. Dividing by the bytes keeps a long choice
from losing only because it has more tokens to pay for (the harnesses' normalised accuracy).
Chance is 25%. The probe needs knowledge of the real world, so the course uses it on the real
data only; the synthetic world has facts of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from .evals import continuation_logps
from .heldout import leaks
from .stats import Score

CHANCE = 0.25
PROMPTS = {"en": "Question: {question}\nAnswer:", "zh": "问题：{question}\n答案："}

# (category, English question, its choices, Chinese question, its choices): the right choice first.
QUESTIONS = [
    ("fact", "How many days are in a week?", ["seven", "five", "ten", "twelve"],
     "一个星期有几天？", ["七天", "五天", "十天", "十二天"]),
    ("fact", "How many months are in a year?", ["twelve", "ten", "seven", "thirty"],
     "一年有几个月？", ["十二个月", "十个月", "七个月", "三十个月"]),
    ("fact", "How many hours are in a day?", ["twenty-four", "twelve", "sixty", "ten"],
     "一天有多少个小时？", ["二十四个小时", "十二个小时", "六十个小时", "十个小时"]),
    ("fact", "How many minutes are in an hour?", ["sixty", "one hundred", "twenty-four", "ten"],
     "一小时有多少分钟？", ["六十分钟", "一百分钟", "二十四分钟", "十分钟"]),
    ("fact", "At what temperature does water boil at sea level?",
     ["100 degrees Celsius", "50 degrees Celsius", "0 degrees Celsius", "200 degrees Celsius"],
     "在海平面上，水在多少摄氏度沸腾？", ["100摄氏度", "50摄氏度", "0摄氏度", "200摄氏度"]),
    ("fact", "At what temperature does water freeze?",
     ["0 degrees Celsius", "100 degrees Celsius", "37 degrees Celsius", "60 degrees Celsius"],
     "水在多少摄氏度结冰？", ["0摄氏度", "100摄氏度", "37摄氏度", "60摄氏度"]),
    ("fact", "What is the capital of China?", ["Beijing", "Shanghai", "Guangzhou", "Shenzhen"],
     "中国的首都是哪座城市？", ["北京", "上海", "广州", "深圳"]),
    ("fact", "What is the capital of France?", ["Paris", "London", "Berlin", "Rome"],
     "法国的首都是哪座城市？", ["巴黎", "伦敦", "柏林", "罗马"]),
    ("fact", "What is the capital of Japan?", ["Tokyo", "Osaka", "Seoul", "Bangkok"],
     "日本的首都是哪座城市？", ["东京", "大阪", "首尔", "曼谷"]),
    ("fact", "What is the capital of the United Kingdom?", ["London", "Paris", "Dublin", "Madrid"],
     "英国的首都是哪座城市？", ["伦敦", "巴黎", "都柏林", "马德里"]),
    ("fact", "Which planet do we live on?", ["Earth", "Mars", "Jupiter", "Venus"],
     "我们生活在哪颗行星上？", ["地球", "火星", "木星", "金星"]),
    ("fact", "Which star is closest to the Earth?", ["the Sun", "the Moon", "Mars", "the North Star"],
     "离地球最近的恒星是什么？", ["太阳", "月亮", "火星", "北极星"]),
    ("fact", "Which is the largest ocean on Earth?",
     ["the Pacific Ocean", "the Atlantic Ocean", "the Indian Ocean", "the Arctic Ocean"],
     "地球上最大的海洋是哪一个？", ["太平洋", "大西洋", "印度洋", "北冰洋"]),
    ("fact", "What is the longest river in China?",
     ["the Yangtze River", "the Yellow River", "the Pearl River", "the Huai River"],
     "中国最长的河流是哪一条？", ["长江", "黄河", "珠江", "淮河"]),
    ("fact", "Which gas do plants take in to make their food?",
     ["carbon dioxide", "oxygen", "nitrogen", "helium"],
     "植物进行光合作用时吸收哪种气体？", ["二氧化碳", "氧气", "氮气", "氦气"]),
    ("fact", "Which gas do people need to breathe in to live?",
     ["oxygen", "carbon dioxide", "hydrogen", "helium"],
     "人需要吸入哪种气体才能活下去？", ["氧气", "二氧化碳", "氢气", "氦气"]),
    ("fact", "How many legs does a spider have?", ["eight", "six", "four", "ten"],
     "蜘蛛有几条腿？", ["八条", "六条", "四条", "十条"]),
    ("fact", "How many legs does an insect have?", ["six", "eight", "four", "two"],
     "昆虫有几条腿？", ["六条", "八条", "四条", "两条"]),
    ("fact", "What is the largest animal on Earth?", ["the blue whale", "the elephant", "the giraffe", "the shark"],
     "地球上最大的动物是什么？", ["蓝鲸", "大象", "长颈鹿", "鲨鱼"]),
    ("fact", "What is the tallest animal?", ["the giraffe", "the elephant", "the horse", "the camel"],
     "最高的动物是什么？", ["长颈鹿", "大象", "马", "骆驼"]),
    ("fact", "Which bamboo-eating animal is called China's national treasure?",
     ["the giant panda", "the tiger", "the koala", "the horse"],
     "哪种吃竹子的动物被称为中国的国宝？", ["大熊猫", "老虎", "考拉", "马"]),
    ("fact", "What colour is the sky on a clear day?", ["blue", "green", "red", "black"],
     "晴天的天空是什么颜色？", ["蓝色", "绿色", "红色", "黑色"]),
    ("fact", "What colour are ripe bananas?", ["yellow", "blue", "purple", "black"],
     "成熟的香蕉是什么颜色？", ["黄色", "蓝色", "紫色", "黑色"]),
    ("fact", "What colour is fresh grass?", ["green", "red", "blue", "white"],
     "新鲜的草是什么颜色？", ["绿色", "红色", "蓝色", "白色"]),
    ("fact", "In which direction does the sun rise?", ["the east", "the west", "the north", "the south"],
     "太阳从哪个方向升起？", ["东方", "西方", "北方", "南方"]),
    ("fact", "How many continents are there?", ["seven", "three", "ten", "twelve"],
     "世界上有几个大洲？", ["七个", "三个", "十个", "十二个"]),
    ("fact", "What is the chemical formula of water?", ["H2O", "CO2", "NaCl", "O2"],
     "水的化学式是什么？", ["H2O", "CO2", "NaCl", "O2"]),
    ("fact", "What do bees make?", ["honey", "milk", "silk", "wool"],
     "蜜蜂酿造什么？", ["蜂蜜", "牛奶", "丝绸", "羊毛"]),
    ("fact", "What do silkworms spin?", ["silk", "honey", "cotton", "wool"],
     "蚕吐的是什么？", ["丝", "蜂蜜", "棉花", "羊毛"]),
    ("fact", "Which organ pumps blood through the body?", ["the heart", "the lungs", "the stomach", "the brain"],
     "人体中哪个器官负责把血液泵到全身？", ["心脏", "肺", "胃", "大脑"]),
    ("fact", "Which organ do we think with?", ["the brain", "the heart", "the liver", "the stomach"],
     "我们用哪个器官思考？", ["大脑", "心脏", "肝脏", "胃"]),
    ("fact", "How many teeth does an adult usually have?", ["thirty-two", "twelve", "fifty", "one hundred"],
     "成年人通常有多少颗牙齿？", ["三十二颗", "十二颗", "五十颗", "一百颗"]),
    ("fact", "Who wrote Romeo and Juliet?",
     ["William Shakespeare", "Charles Dickens", "Mark Twain", "Leo Tolstoy"],
     "《罗密欧与朱丽叶》的作者是谁？", ["莎士比亚", "狄更斯", "马克·吐温", "托尔斯泰"]),
    ("fact", "Who wrote Dream of the Red Chamber?", ["Cao Xueqin", "Lu Xun", "Li Bai", "Confucius"],
     "《红楼梦》的作者是谁？", ["曹雪芹", "鲁迅", "李白", "孔子"]),
    ("fact", "Which is the largest country in the world by area?", ["Russia", "China", "Japan", "France"],
     "世界上面积最大的国家是哪一个？", ["俄罗斯", "中国", "日本", "法国"]),
    ("fact", "In which country is the Great Wall?", ["China", "Egypt", "Italy", "Brazil"],
     "长城在哪个国家？", ["中国", "埃及", "意大利", "巴西"]),
    ("fact", "In which country are the pyramids of Giza?", ["Egypt", "China", "Canada", "Norway"],
     "吉萨金字塔在哪个国家？", ["埃及", "中国", "加拿大", "挪威"]),
    ("fact", "What is the highest mountain in the world?",
     ["Mount Everest", "Mount Fuji", "Mount Tai", "Mount Kilimanjaro"],
     "世界上最高的山峰是哪一座？", ["珠穆朗玛峰", "富士山", "泰山", "乞力马扎罗山"]),
    ("fact", "What does a thermometer measure?", ["temperature", "weight", "time", "distance"],
     "温度计用来测量什么？", ["温度", "重量", "时间", "距离"]),
    ("fact", "What does a clock show?", ["the time", "the temperature", "the weight", "the distance"],
     "钟表显示的是什么？", ["时间", "温度", "重量", "距离"]),
    ("fact", "At which festival do Chinese families eat dumplings to welcome the new year?",
     ["the Spring Festival", "the Dragon Boat Festival", "the Mid-Autumn Festival", "the Qingming Festival"],
     "中国人在哪个节日吃饺子、迎接新年？", ["春节", "端午节", "中秋节", "清明节"]),
    ("fact", "Which festival is known for mooncakes?",
     ["the Mid-Autumn Festival", "the Spring Festival", "the Dragon Boat Festival", "the Lantern Festival"],
     "哪个节日以吃月饼闻名？", ["中秋节", "春节", "端午节", "元宵节"]),
    ("fact", "How many sides does a triangle have?", ["three", "four", "five", "six"],
     "三角形有几条边？", ["三条", "四条", "五条", "六条"]),
    ("fact", "How many sides does a square have?", ["four", "three", "five", "eight"],
     "正方形有几条边？", ["四条", "三条", "五条", "八条"]),
    ("fact", "Which metal is a liquid at room temperature?", ["mercury", "iron", "copper", "gold"],
     "哪种金属在室温下是液体？", ["汞", "铁", "铜", "金"]),
    ("fact", "What is the main language of Brazil?", ["Portuguese", "Spanish", "English", "French"],
     "巴西的主要语言是什么？", ["葡萄牙语", "西班牙语", "英语", "法语"]),
    ("fact", "What is the currency of Japan?", ["the yen", "the dollar", "the euro", "the pound"],
     "日本的货币是什么？", ["日元", "美元", "欧元", "英镑"]),
    ("fact", "What is the currency of China?", ["the yuan", "the yen", "the euro", "the rupee"],
     "中国的货币是什么？", ["人民币", "日元", "欧元", "卢比"]),
    ("fact", "How many players does a football team have on the field?", ["eleven", "five", "seven", "fifteen"],
     "一支足球队在场上有几名球员？", ["十一名", "五名", "七名", "十五名"]),
    ("fact", "Which season comes after winter?", ["spring", "summer", "autumn", "night"],
     "冬天过后是哪个季节？", ["春天", "夏天", "秋天", "夜晚"]),
    ("common_sense", "What do you use to cut paper?", ["scissors", "a spoon", "a pillow", "a cup"],
     "剪纸用什么？", ["剪刀", "勺子", "枕头", "杯子"]),
    ("common_sense", "Where do fish live?", ["in water", "in trees", "in the desert", "in the sky"],
     "鱼生活在哪里？", ["水里", "树上", "沙漠里", "天上"]),
    ("common_sense", "What do we wear on our feet?", ["shoes", "hats", "gloves", "glasses"],
     "我们脚上穿什么？", ["鞋子", "帽子", "手套", "眼镜"]),
    ("common_sense", "What is an umbrella for?",
     ["keeping off the rain", "cooking food", "writing letters", "opening doors"],
     "雨伞是用来做什么的？", ["挡雨", "做饭", "写信", "开门"]),
    ("common_sense", "What do you need to see in a dark room?", ["a light", "a fork", "a blanket", "a chair"],
     "在黑暗的房间里想看清东西，需要什么？", ["灯", "叉子", "毯子", "椅子"]),
    ("common_sense", "What happens to ice cream left in the sun?", ["it melts", "it freezes", "it grows", "it sings"],
     "冰淇淋放在太阳底下会怎样？", ["融化", "冻住", "长大", "唱歌"]),
    ("common_sense", "What can you usually see in the night sky?",
     ["the moon and stars", "the midday sun", "green grass", "the ocean"],
     "夜晚的天空中通常能看到什么？", ["月亮和星星", "正午的太阳", "绿草", "大海"]),
    ("common_sense", "What do you do with a book?", ["read it", "drink it", "wear it", "plant it"],
     "书是用来做什么的？", ["阅读", "喝", "穿", "种"]),
    ("common_sense", "Which is heavier, an elephant or a mouse?",
     ["an elephant", "a mouse", "they weigh the same", "neither"],
     "大象和老鼠哪个更重？", ["大象", "老鼠", "一样重", "都不重"]),
    ("common_sense", "Which is hotter, fire or snow?", ["fire", "snow", "they are equally hot", "neither"],
     "火和雪哪个更热？", ["火", "雪", "一样热", "都不热"]),
    ("common_sense", "What do people usually do at night?",
     ["sleep", "swim in the sea", "plant rice", "climb mountains"],
     "人们晚上通常做什么？", ["睡觉", "在海里游泳", "插秧", "爬山"]),
    ("common_sense", "Where do you go to see a doctor?", ["a hospital", "a bakery", "a cinema", "a zoo"],
     "看病应该去哪里？", ["医院", "面包店", "电影院", "动物园"]),
    ("common_sense", "Where do you borrow books?", ["a library", "a gym", "a swimming pool", "a petrol station"],
     "借书应该去哪里？", ["图书馆", "健身房", "游泳池", "加油站"]),
    ("common_sense", "What do you write on paper with?", ["a pen", "a spoon", "a shoe", "a plate"],
     "在纸上写字用什么？", ["笔", "勺子", "鞋子", "盘子"]),
    ("common_sense", "What do cows give us?", ["milk", "honey", "silk", "wool"],
     "奶牛给我们提供什么？", ["牛奶", "蜂蜜", "丝绸", "羊毛"]),
    ("common_sense", "Which animal lays eggs?", ["a chicken", "a dog", "a cat", "a cow"],
     "哪种动物会下蛋？", ["鸡", "狗", "猫", "牛"]),
    ("common_sense", "What should you do before crossing the street?",
     ["look both ways", "close your eyes", "run without looking", "sit down"],
     "过马路之前应该做什么？", ["左右看看", "闭上眼睛", "不看就跑", "坐下来"]),
    ("common_sense", "What should you drink when you are thirsty?", ["water", "sand", "oil", "ink"],
     "口渴的时候应该喝什么？", ["水", "沙子", "油", "墨水"]),
    ("common_sense", "What do you open a locked door with?", ["a key", "a spoon", "a towel", "a book"],
     "打开锁着的门要用什么？", ["钥匙", "勺子", "毛巾", "书"]),
    ("common_sense", "What does water turn into when it gets very cold?", ["ice", "fire", "sand", "stone"],
     "水变得很冷的时候会变成什么？", ["冰", "火", "沙子", "石头"]),
    ("common_sense", "What do plants need to grow?",
     ["sunlight and water", "darkness and salt", "only sand", "only ice"],
     "植物生长需要什么？", ["阳光和水", "黑暗和盐", "只要沙子", "只要冰"]),
    ("common_sense", "Which is bigger, the Sun or the Moon?",
     ["the Sun", "the Moon", "they are the same size", "neither"],
     "太阳和月亮哪个更大？", ["太阳", "月亮", "一样大", "都不大"]),
    ("common_sense", "What do birds fly with?", ["wings", "fins", "wheels", "roots"],
     "鸟用什么飞翔？", ["翅膀", "鳍", "轮子", "根"]),
    ("common_sense", "What do fish swim with?", ["fins", "legs", "wheels", "roots"],
     "鱼用什么游泳？", ["鳍", "腿", "轮子", "根"]),
    ("common_sense", "What is the meal eaten in the morning called?", ["breakfast", "dinner", "supper", "lunch"],
     "早上吃的那顿饭叫什么？", ["早餐", "晚餐", "夜宵", "午餐"]),
    ("common_sense", "What should you wear when it is cold?",
     ["a warm coat", "a swimsuit", "sandals", "a paper hat"],
     "天冷的时候应该穿什么？", ["厚外套", "泳衣", "凉鞋", "纸帽子"]),
    ("common_sense", "Which of these is a fruit?", ["an apple", "a carrot", "a potato", "an onion"],
     "下面哪一个是水果？", ["苹果", "胡萝卜", "土豆", "洋葱"]),
    ("common_sense", "Which of these is a vegetable?", ["a carrot", "a banana", "a grape", "a mango"],
     "下面哪一个是蔬菜？", ["胡萝卜", "香蕉", "葡萄", "芒果"]),
    ("common_sense", "What do you eat soup with?", ["a spoon", "a knife", "a comb", "a pencil"],
     "喝汤用什么？", ["勺子", "刀", "梳子", "铅笔"]),
    ("common_sense", "How do you feel after running for a long time?", ["tired", "frozen", "invisible", "asleep"],
     "跑了很久之后会觉得怎样？", ["累", "冻僵", "隐身", "睡着"]),
    ("common_sense", "What do you call your mother's mother?",
     ["your grandmother", "your sister", "your aunt", "your daughter"],
     "妈妈的妈妈叫什么？", ["外婆", "姐姐", "阿姨", "女儿"]),
    ("common_sense", "What do you call your father's father?",
     ["your grandfather", "your brother", "your uncle", "your son"],
     "爸爸的爸爸叫什么？", ["爷爷", "哥哥", "叔叔", "儿子"]),
    ("common_sense", "Which of these can fly?", ["a bird", "a fish", "a rock", "a tree"],
     "下面哪一个会飞？", ["鸟", "鱼", "石头", "树"]),
    ("common_sense", "What do you use to talk to someone far away?",
     ["a telephone", "a pillow", "a broom", "a spoon"],
     "想和远方的人说话，用什么？", ["电话", "枕头", "扫帚", "勺子"]),
    ("common_sense", "What do firefighters put out?", ["fires", "rivers", "books", "songs"],
     "消防员扑灭的是什么？", ["火灾", "河流", "书本", "歌曲"]),
]

# (a, operation, b) for the arithmetic questions; the wrong choices are near the right answer.
SUMS = [(2, "+", 3), (4, "+", 5), (7, "+", 6), (8, "+", 9), (12, "+", 15), (20, "+", 30), (25, "+", 25),
        (36, "+", 14), (45, "+", 27), (100, "+", 200), (9, "-", 4), (10, "-", 7), (15, "-", 8), (20, "-", 5),
        (50, "-", 25), (63, "-", 21), (100, "-", 1), (81, "-", 9), (2, "*", 3), (3, "*", 4), (5, "*", 5),
        (6, "*", 7), (8, "*", 8), (9, "*", 3), (10, "*", 10), (12, "*", 2), (7, "*", 8), (4, "*", 25),
        (11, "*", 11), (6, "*", 6), (30, "+", 40), (18, "-", 9), (3, "*", 9), (14, "+", 14)]
OPERATION_WORDS = {"+": ("plus", "加"), "-": ("minus", "减"), "*": ("times", "乘以")}


def _arithmetic() -> list[tuple]:
    rows = []
    for a, op, b in SUMS:
        right = {"+": a + b, "-": a - b, "*": a * b}[op]
        choices = [str(right)] + [str(right + d) for d in (1, -2, 10)]
        en, zh = OPERATION_WORDS[op]
        rows.append(("arithmetic", f"What is {a} {en} {b}?", choices, f"{a}{zh}{b}等于多少？", choices))
    return rows


def items() -> list[dict]:
    """The probe's items: {"prompt", "choices", "answer" (index), "lang", "group", "category"};
    the Chinese and English forms of one question share a group. The right choice's position
    rotates, so that no position is the right one by habit (it does not matter to the scoring,
    but a reader of the table should not learn a pattern)."""
    out = []
    for group, (category, en_q, en_choices, zh_q, zh_choices) in enumerate(QUESTIONS + _arithmetic()):
        for lang, question, choices in (("zh", zh_q, zh_choices), ("en", en_q, en_choices)):
            shift = group % len(choices)
            rotated = choices[-shift:] + choices[:-shift] if shift else list(choices)
            out.append({"prompt": PROMPTS[lang].format(question=question), "choices": rotated,
                        "answer": shift, "lang": lang, "group": group, "category": category,
                        "question": question})
    return out


def statements(items_: Sequence[dict]) -> list[str]:
    """Each item's question: what must not occur in any training text for it to be held out."""
    return [it["question"] for it in items_]


def heldout_items(training_texts) -> tuple[list[dict], list[str]]:
    """(the items whose question occurs in no training text, the questions that do)."""
    all_items = items()
    leaked = set(leaks(statements(all_items), training_texts))
    return [it for it in all_items if it["question"] not in leaked], sorted(leaked)


def _continuation(lang: str, choice: str) -> str:
    return (" " if lang == "en" else "") + choice  # English words follow "Answer:" after a space


def choice_logps(model, tokenizer, items_: Sequence[dict], batch_size: int = 64) -> list[list[float]]:
    """log p(choice | prompt) for every choice of every item, summed over the choice's tokens.

    Prompt and choice are tokenized apart and joined, so every choice starts on a token boundary
    after the same prompt tokens."""
    rows = []  # (token ids, where the choice starts)
    for it in items_:
        prompt = tokenizer(it["prompt"], add_special_tokens=False)["input_ids"]
        for choice in it["choices"]:
            rows.append((prompt + tokenizer(_continuation(it["lang"], choice), add_special_tokens=False)["input_ids"],
                         len(prompt)))
    flat = continuation_logps(model, rows, tokenizer.pad_token_id, batch_size).tolist()
    out, k = [], 0
    for it in items_:
        out.append(flat[k : k + len(it["choices"])])
        k += len(it["choices"])
    return out


def picks(items_: Sequence[dict], logps: Sequence[Sequence[float]]) -> list[int]:
    """The choice each item's model answer is: the highest log-probability per UTF-8 byte."""
    return [max(range(len(lp)), key=lambda c: lp[c] / len(_continuation(it["lang"], it["choices"][c]).encode()))
            for it, lp in zip(items_, logps, strict=True)]


def accuracy(model, tokenizer, items_: Sequence[dict]) -> Score:
    """Share of items whose best-scoring choice is the right one (a `Score`, grouped by question)."""
    chosen = picks(items_, choice_logps(model, tokenizer, items_))
    return Score.of([c == it["answer"] for c, it in zip(chosen, items_, strict=True)],
                    groups=[it["group"] for it in items_])
