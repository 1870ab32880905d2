#!/usr/bin/env python3
"""Writes tokenizer_corpus.jsonl: hand-written test strings for the tokenizer oracle test.

Each line is {"text": ...}. The strings were written for dsv4 to exercise the parts of the
DeepSeek tokenizer that can go wrong: the three pre-tokenizer regexes (digits in groups of
three, the CJK/kana range, letters with a leading punctuation or space, punctuation runs,
whitespace runs with and without a following non-space), added tokens (whole, adjacent,
overlapping, near-misses), byte-level BPE on every byte, and decoding. The expected ids are not
stored: tests/tokenizer_oracle.test.sh asks the Hugging Face library for them.

Run: python3 tests/data/make_tokenizer_corpus.py > tests/data/tokenizer_corpus.jsonl
"""
import json
import sys

texts = []


def add(*items):
    texts.extend(items)


# ---- English prose ----------------------------------------------------------------------
add(
    "The tokenizer splits text into pieces before it ever looks at the merge table.",
    "It was the best of times; it was the worst of times -- or so the story goes.",
    "Don't panic. We'll see what they've done, and I'd say it's fine, isn't it?",
    "Mr. O'Neil paid $1,234.56 on 2024-03-15 at 09:41:07 UTC (ref #A-77/B).",
    "\"Quoted,\" she said, 'and single-quoted'... then: (parenthetical [bracketed {braced}]).",
    "e.g., i.e., etc., vs., a.k.a. -- abbreviations with dots, U.S.A. and Ph.D.",
    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n\r\n",
    "Email me at someone.else+tag@example.org or visit https://example.com/a/b?c=d&e=f#frag.",
    "ALLCAPS words, camelCase words, snake_case_words, kebab-case-words, and PascalCase.",
    "A sentence with trailing spaces.   ",
    "   A sentence with leading spaces.",
    "Tabs\tbetween\twords\tand\t\tdouble\ttabs.",
    "Line one.\nLine two.\n\nParagraph two.\n\n\n\nFour newlines before this.",
    "Windows\r\nline\r\nendings\r\n\r\nand a lone\rcarriage return.",
)
prose = (
    "Language models read text as a sequence of tokens. A token is usually a word, a piece of a "
    "word, or a run of punctuation; common words get one token each, rare words are spelled out "
    "from smaller pieces. The vocabulary of DeepSeek has 128,000 entries learned from data, plus "
    "a few hundred added tokens that mark the structure of a conversation: where the user speaks, "
    "where the assistant answers, where a tool is called and where its output ends. Because the "
    "model never sees characters, only ids, two texts that look alike to a person can look very "
    "different to it: a trailing space, a non-breaking space, or a full-width digit all change the "
    "ids. That is why a re-implementation has to agree with the reference on every byte."
)
add(prose, prose.upper(), prose.replace(" ", "  "), prose.replace(". ", ".\n"))
for n in (1, 2, 3, 5, 8):
    add(" ".join(prose.split()[: n * 7]))

# ---- code -------------------------------------------------------------------------------
add(
    "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n"
    "    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint([fib(i) for i in range(10)])\n",
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; i++)\n"
    "\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\treturn 0;\n}\n",
    "const sum = (xs) => xs.reduce((a, b) => a + b, 0);\nconsole.log(`sum = ${sum([1, 2, 3])}`);\n"
    "export default async function handler(req, res) { res.status(200).json({ ok: true }); }\n",
    "fn main() {\n    let v: Vec<u32> = (1..=10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n"
    "    if let Some(&last) = v.last() { assert_eq!(last, 100); }\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tch := make(chan int, 3)\n\tgo func() { ch <- 42 }()\n"
    "\tfmt.Println(<-ch)\n}\n",
    "SELECT u.id, u.name, COUNT(o.id) AS orders\nFROM users u\nLEFT JOIN orders o ON o.user_id = u.id\n"
    "WHERE u.created_at >= '2023-01-01'\nGROUP BY u.id, u.name\nHAVING COUNT(o.id) > 5\nORDER BY orders DESC;\n",
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  wc -l \"$f\" | awk '{print $1}'\ndone\n"
    "echo \"${HOME:-/root}\" 2>&1 >/dev/null || true\n",
    '{"name": "dsv4", "version": "0.1.0", "tags": ["c", "llm"], "nested": {"a": [1, 2.5, -3e-7, true, null]}}',
    "server:\n  host: 0.0.0.0\n  port: 8080\n  workers: 4\nmodels:\n  - name: deepseek-v4-flash\n"
    "    max_ctx: 1048576\n",
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Test</title></head>\n"
    "<body><div class=\"a b\" id='x'>&lt;escaped&gt; &amp; &nbsp; text</div></body>\n</html>\n",
    "# Heading\n\n- item one\n- item **two** with `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    "```python\nprint('hi')\n```\n> quote\n",
    "\\documentclass{article}\n\\begin{document}\n$$\\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}$$\n"
    "\\end{document}\n",
    "x+=1;y-=2;z*=3;w/=4;a%=5;b<<=6;c>>=7;d&=8;e|=9;f^=10;g&&h||!i;j==k!=l<=m>=n;p->q;r::s;",
    "    \t    mixed indentation\n\t    \tis\n  \t  everywhere\n",
    "struct dsv4_tokenizer *t = NULL; /* comment */ // line comment\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
    "regex = r'^(?P<year>\\d{4})-(?P<month>\\d\\d)-(?P<day>\\d\\d)$'  # named groups\n",
    "0x7fffffff 0b1010_1010 0o755 1_000_000 3.14159e+10 .5 5. 1e-9f 0xDEADBEEFull",
)

# ---- numbers ----------------------------------------------------------------------------
add(
    "1", "12", "123", "1234", "12345", "123456", "1234567", "1234567890123456789012345",
    "3.14159265358979323846", "-0.000001", "+1e100", "1,000,000", "1.000.000,00", "10^9 + 7",
    "Room 101, floor 7, building 12B; call 555-0199 or +44 20 7946 0958.",
    "０１２３４５６７８９ full-width digits",
    "٠١٢٣٤٥٦٧٨٩ Arabic-Indic, ۰۱۲۳۴۵۶۷۸۹ Persian, ०१२३४५६७८९ Devanagari, ๐๑๒๓๔๕๖๗๘๙ Thai",
    "x² + y³ = z⁴; H₂O; ½ ¼ ¾ ⅓ ⅔ ⅛; Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ ⅰ ⅱ; ① ② ③ ⑩ ⑳; 〇 一 二 三",
    "The years 1999, 2000 and 2024; the numbers 007, 0042, 000000.",
    "abc123def4567ghi89012jkl",
    "v1.2.3-rc.4+build.5678",
    "9" * 40,
    "12:34:56.789 -> 23:59:59.999",
)

# ---- CJK, Japanese, Korean ----------------------------------------------------------------
add(
    "深度求索是一家专注于通用人工智能的公司。我们相信，开放的研究能够推动整个领域的进步。",
    "你好，世界！今天天气怎么样？我想去公园散步，然后喝一杯咖啡。",
    "中文和English混合的句子，包含数字123和符号！？",
    "「引号」『双引号』【方括号】《书名号》——破折号……省略号",
    "龥龦 (U+9FA5 and U+9FA6 sit on the edge of the CJK range of the pre-tokenizer)",
    "㐀㐁㐂 (Extension A) 𠀀𠀁𠀂 (Extension B)",
    "日本語の文章です。ひらがな、カタカナ、漢字が混ざっています。",
    "コンピューター・プログラミング　ー　全角スペースも",
    "ｶﾀｶﾅ ﾊﾝｶｸ (half-width katakana) ゛゜ゝゞヽヾ",
    "東京都渋谷区 1-2-3、〒150-0002",
    "한국어 문장입니다. 안녕하세요, 만나서 반갑습니다!",
    "ㄱㄴㄷ ㅏㅑㅓ 한글 자모와 음절",
    "中" * 50,
    "你好" + " " * 5 + "世界" + "\n" * 3 + "再见",
)

# ---- other scripts, combining marks ---------------------------------------------------------
add(
    "Привет, мир! Как дела? Ёжик в тумане.",
    "Γειά σου Κόσμε! Η γρήγορη καφέ αλεπού.",
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "سلام دنیا! حال شما چطور است؟",
    "שלום עולם! מה שלומך?",
    "בְּרֵאשִׁית בָּרָא אֱלֹהִים (with niqqud)",
    "नमस्ते दुनिया! आप कैसे हैं? क्षत्रिय",
    "สวัสดีชาวโลก! คุณสบายดีไหม",
    "Բարեւ աշխարհ! გამარჯობა მსოფლიო! ሰላም ዓለም!",
    "Tiếng Việt có dấu: Nguyễn Trãi, phở, bánh mì, ướt át.",
    "Ça va? Größe, Straße, naïve, façade, smørrebrød, Ærø, Łódź, İstanbul, ß ẞ",
    "e\u0301 vs \u00e9; a\u0308 vs \u00e4; n\u0303 vs \u00f1 (decomposed and precomposed)",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA"
    "\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u031b"
    "\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333!",
    "\u0301\u0302 combining marks at the start, then text",
    "क्\u200dष and क्\u200cष (ZWJ and ZWNJ)",
    "𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝕯𝖔𝖚𝖇𝖑𝖊 𝙼𝚘𝚗𝚘 (math alphanumerics)",
    "𐌰𐌱𐌲 Gothic, ᚠᚢᚦ runes, Ⲁⲃⲅ Coptic",
)

# ---- emoji -------------------------------------------------------------------------------
add(
    "I ❤️ tokenizers 😀😃😄😁 🚀🔥💯",
    "👨‍👩‍👧‍👦 family, 👩🏽‍💻 technologist, 🏳️‍🌈 flag, 🧑🏿‍🤝‍🧑🏻 holding hands",
    "🇺🇸🇨🇳🇯🇵🇰🇷🇩🇪🇫🇷 flags",
    "1️⃣ 2️⃣ #️⃣ *️⃣ keycaps",
    "👍🏻👍🏼👍🏽👍🏾👍🏿 skin tones",
    "😀" * 30,
    "emoji🙂inside🙃words",
    "☀ ☀️ ✔ ✔️ (text and emoji presentation)",
)

# ---- whitespace ----------------------------------------------------------------------------
add(
    " ", "  ", "   ", " " * 16, " " * 100, "\t", "\t\t\t", "\n", "\n\n", "\r\n", "\r", "\r\r\n\n",
    "a b", "a  b", "a   b", "a \n b", "a\t \tb", "a \r\n b", "a\n \nb", "a  \n\n  b",
    "end with space ", "end with spaces   ", "end with newline\n", "end with tab\t",
    " \n \n \n", "\n \n \n ", " \t\n\r\x0b\x0c",
    "no\u00a0break\u00a0space", "en\u2002em\u2003thin\u2009hair\u200a", "ideographic\u3000space\u3000",
    "line\u2028separator\u2029paragraph", "next\u0085line", "ogham\u1680space",
    "zero\u200bwidth\u200bspace", "\ufeffbyte order mark", "narrow\u202fno-break\u205fmath",
    "  \u00a0 \u00a0  mixed spaces  \u3000  ",
    "word" + " " * 7 + "\n" + " " * 3 + "word",
    "x\n\n\n\n\n\n\n\n\n\ny",
    "indented\n    four\n        eight\n            twelve",
)

# ---- special tokens and markup --------------------------------------------------------------
specials = [
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
    "<think>", "</think>", "｜DSML｜", "<|EOT|>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
    "<｜tool▁sep｜>", "<｜latest_reminder｜>", "<dsml:", "</dsml:", "<｜place▁holder▁no▁0｜>",
    "<｜place▁holder▁no▁799｜>", "<|place_holder_mm_span_0021|>", "<|place_holder_mm_span_0435|>",
    "<｜image｜>", "<｜image2｜>", "<｜/table>｜", "<｜table｜>", "<｜box｜>", "<｜/ref｜>",
    "<｜end_of_query｜>", "<｜search▁begin｜>", "<｜extracted_url｜>", "<｜rl_image_pad｜>",
]
add(*specials)
add("".join(specials), " ".join(specials), "\n".join(specials))
add(
    "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜></think>4<｜end▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜><think>The user greets me.</think>Hello!"
    "<｜end▁of▁sentence｜><｜User｜>Bye<｜Assistant｜></think>",
    "<｜User｜><｜User｜><｜User｜>", "<think><think></think></think>",
    "word<｜User｜>word", "  <｜User｜>  ", "\n<｜Assistant｜>\n", "123<｜User｜>456",
    # near-misses: none of these is an added token
    "<｜User", "｜User｜>", "<|User|>", "<｜user｜>", "< ｜User｜>", "<｜User ｜>", "<｜User｜ >",
    "<｜place▁holder▁no▁800｜>", "<|place_holder_mm_span_0020|>", "<|place_holder_mm_span_436|>",
    "<｜/table｜>", "<｜System｜>", "<thinking>", "</ think>", "<think", "think>", "<｜DSML", "DSML｜",
    "<dsml", "dsml:", "<|EOT|", "<|eot|>", "<｜▁pad▁", "▁pad▁｜>",
    # overlaps and adjacency
    "<｜/table>｜DSML｜", "<｜<｜User｜>｜>", "<<think>>", "<｜｜DSML｜｜>", "｜DSML｜DSML｜",
    "<dsml:dsml:</dsml:", "<think></think><think>", "<｜User｜><|EOT|><｜Assistant｜>",
)
dsml = (
    "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"location\" string=\"true\">Hangzhou</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜tool_calls>"
)
add(
    dsml,
    "Let me check.\n\n" + dsml + "<｜end▁of▁sentence｜>",
    "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{\"temp\": 21.5, \"unit\": \"celsius\"}"
    "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>",
    "<dsml:answer>42</dsml:answer> <dsml:cite id=\"3\"/>",
    "<｜fim▁begin｜>def add(a, b):\n    <｜fim▁hole｜>\n<｜fim▁end｜>",
)

# ---- odd bytes and characters ------------------------------------------------------------
add(
    "\x00", "a\x00b", "\x00\x00\x00", "\x01\x02\x03\x1b[31mred\x1b[0m\x7f",
    "\u0080\u0081\u009f C1 controls", "\ufffd replacement \ufffd\ufffd", "Ġ Ċ ĉ Ā ā ▁ Ġhello Ċworld",
    "Ã©tÃ© mojibake â€™ â€œ", "\ue000\ue001\uf8ff private use", "\U000f0000\U0010fffd supplementary PUA",
    "\ufdd0 \ufffe \uffff \U0001fffe noncharacters", "\U000e0041\U000e0042 tags \U000e007f",
    "\u202eevil\u202c \u2066isolate\u2069 bidi controls", "\u00ad soft\u00adhyphen",
    "\u0378 unassigned then letters", "\u0378abc",
)

# ---- mixed ----------------------------------------------------------------------------------
add(
    "English 中文 日本語 한국어 Русский العربية עברית हिन्दी ไทย 😀 123 ４５６",
    "price: ¥1,280 / €12.50 / £9.99 / $15 / ₹799 / ₩15,000 / ₿0.0001",
    "temp=23.5°C, humidity=45%, wind=12km/h NNE; α=0.05, β≈1.96σ, ∑x²≥∏y, ∀x∃y: x≠y → ¬(x=y)",
    "Q: 什么是BPE？A: Byte-Pair Encoding（字节对编码）是一种子词算法。",
    "user@例子.广告 https://例子.测试/路径?查询=值",
    "[1] Smith, J. (2020). \"On Tokens\". J. Lang. 12(3): 45–67. doi:10.1000/xyz123",
    "——————————————— ………… ~~~~~ ===== ----- _____ ***** ##### !!!!! ????? .....",
    "a-b_c.d/e\\f:g;h,i!j?k'l\"m(n)o[p]q{r}s<t>u|v`w~x@y#z$%^&*+=",
    "!a \"b #c $d %e &f 'g (h )i *j +k ,l -m .n /o :p ;q <r =s >t ?u @v [w \\x ]y ^z _A `B {C |D }E ~F",
)

for t in texts:
    sys.stdout.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
