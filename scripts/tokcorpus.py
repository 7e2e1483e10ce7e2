#!/usr/bin/env python3
"""Writes a varied tokenizer test corpus to stdout, one input per line in the escaped line
format of `shoal tokenize` (\\n \\t \\r \\\\ \\xHH). Deterministic for a given --seed.

    python3 scripts/tokcorpus.py [--seed 1] [--random 3000] [FILE...]

Contents: hand-written samples (code in several languages, many scripts, emoji and ZWJ
sequences, combining marks, contractions in all cases, long runs of spaces / digits / newlines,
control characters, invalid UTF-8, special-token look-alikes) and random strings drawn from a
mix of Unicode blocks and ASCII classes.
"""
import argparse
import random

FIXED = [
    "Hello world", " Hello world", "Hello  world", "  leading and trailing  ", "",
    " ", "  ", "   ", "\t", "\n", "\n\n\n", " \n ", "\r\n", "a\r\nb\rc\n", "\t\tindented\n\tcode",
    "I'm you're he's we've they'll she'd I'M YOU'RE HE'S WE'VE THEY'LL SHE'D it's IT'S",
    "'s 't 're 've 'm 'll 'd", "don't won't can't shouldn't", "''''", "'", "a'b'c",
    "1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "0000000000000000000000000000000000000000",
    "Price: $1,234.56 (-7.8%) +3e10 0x1F 0b1010 1_000_000",
    "def foo(x):\n    return x ** 2  # square\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}",
    "for (let i = 0; i < n; i++) { arr[i] = i * 2; }",
    "fn main() -> Result<(), Box<dyn Error>> { println!(\"{:?}\", v); Ok(()) }",
    "<html><body class=\"x\">&nbsp;&lt;tag&gt;</body></html>",
    "SELECT * FROM users WHERE id = 1 AND name LIKE '%bob%';",
    "    if x == 1:\n        pass\n    elif x != 2:\n        pass",
    "a  b   c    d     e      f       g        h",
    " " * 40 + "x", "x" + " " * 40, "\n" * 20, "\t" * 10 + "tab",
    "a" * 200, "ab" * 150, "🙂" * 30, "1" * 100, "." * 64, "-" * 80, "=" * 50,
    "Здравствуй, мир! Как дела?", "Γειά σου Κόσμε", "こんにちは世界", "你好，世界！", "안녕하세요 세계",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
    "ሰላም ልዑል", "Բարեւ աշխարհ", "გამარჯობა მსოფლიო", "ᐊᐃᔭᐅᒃ", "ᚠᚢᚦᚨᚱᚲ", "𐌰𐌱𐌲",
    "Ünïcödé àéîõü ÀÉÎÕÜ ñ Ñ ç Ç ß ẞ æ Æ ø Ø å Å œ Œ", "İstanbul ıi Iİ", "ǅǈǋ ﬁ ﬂ ﬀ",
    "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937", "Z\u0351\u036b\u0343\u036a\u0302a\u0306\u0352lgo",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇸🇯🇵 ❤️ ✌🏿 🤷‍♀️", "emoji🙂in🙂text", "😀😃😄😁😆😅🤣😂",
    "∀x∈ℝ: x²≥0 ∑∫∂√∞≠≈≤≥ ±×÷", "ℌ𝔢𝔩𝔩𝔬 𝐁𝐨𝐥𝐝 𝒮𝒸𝓇𝒾𝓅𝓉 ①②③ Ⅳ Ⅻ ½ ¾ ²³",
    "١٢٣٤٥ ०१२३४ ๑๒๓ 一二三 １２３ ¹²³", "Ⓐⓑⓒ ⑴⑵ ㈠㈡", "™©®℗℠ §¶†‡•…‰′″‴",
    "\u00a0nbsp\u00a0\u00a0two", "\u2000\u2001\u2002\u2003 em\u3000ideographic\u3000",
    "zero\u200bwidth\u200cjoiner\u200dx\ufeffbom", "\u2028line\u2029para\u0085nel",
    "\x00nul", "\x01\x02\x03\x1b[31mred\x1b[0m", "\x7f\x1c\x1d\x1e\x1f", "\x0b\x0c",
    "<s>", "</s>", "<unk>", "<s> hello </s>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|user|>\nhello<|end|>\n<|assistant|>", "[CLS] [SEP] [MASK] [PAD] [UNK]",
    "text<|endoftext|>more", "  <s>  spaced  </s>  ", "<|im_start|><|im_start|>",
    "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>", "<|end|>   trailing", "</s>\n\nx",
    "ﾊﾝｶｸ ｶﾀｶﾅ", "Ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "ａ’ｂ“ｃ”", "«quotes» „low“ ‚single‘ ‹›",
    "\u0300leading combining", "\ud7a3\u1100\u1161\u11a8", "\U0001F600\U0001F9D1\u200d\U0001F4BB",
    "\U00031350\U0002EBF0 \U00011F00 \U0001E4D0 \U0001F6DC \U0001FA75",
    "hello\xffworld", "\xc3(", "\xe2\x82", "\xf0\x9f\x98", "\x80\x81\x82", "\xed\xa0\x80",
    "\xc0\xaf", "ab\xfe\xfecd", "\xf8\x88\x80\x80\x80",
    "URL: https://example.com/path?query=1&b=2#frag user@mail.org",
    "C:\\Users\\name\\file.txt /usr/local/bin", "$HOME ~/.config `cmd` | grep -v ^#",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE", "x1y2z3 a1 2b 3c4",
    "....,,,;;;:::!!!???", "(((nested)))[[[x]]]{{{y}}}", "a.b.c.d", "e.g. i.e. etc. Mr. Dr.",
    "tab\tseparated\tvalues\n1\t2\t3", "trailing spaces   \n  \n", " \t \n \t ",
]

BLOCKS = [
    (0x20, 0x7E), (0x20, 0x7E), (0x20, 0x7E), (0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A),
    (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F), (0x590, 0x6FF),
    (0x900, 0x97F), (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1FFF),
    (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2150, 0x218F),
    (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2460, 0x24FF), (0x2500, 0x257F), (0x2600, 0x27BF),
    (0x3000, 0x303F), (0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF),
    (0x10000, 0x1007F), (0x1D400, 0x1D7FF), (0x1F300, 0x1F64F), (0x1F680, 0x1F6FF),
    (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F), (0x0, 0x1F), (0x7F, 0x9F),
]
SPECIAL_BITS = [" ", "  ", "\n", "\t", "'s", "'LL", "<s>", "</s>", "<|endoftext|>", "<|im_start|>",
                "<|end|>", "[CLS]", "123", "  \n", "\r\n", "\u00a0", "...", "'"]


def rand_string(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.15:
            parts.append(rng.choice(SPECIAL_BITS))
        elif r < 0.25:
            parts.append(" " * rng.randint(1, 8))
        else:
            lo, hi = rng.choice(BLOCKS)
            while True:
                cs = [chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8))]
                if not any(0xD800 <= ord(c) <= 0xDFFF for c in cs):
                    break
            parts.append("".join(cs))
    return "".join(parts)


def escape(s):
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    out = []
    for x in b:
        c = chr(x)
        if c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif x < 0x20 or x == 0x7F:
            out.append("\\x%02x" % x)
        else:
            out.append(None)
            out[-1] = bytes([x])
    res = bytearray()
    for o in out:
        res += o.encode() if isinstance(o, str) else o
    return bytes(res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random", type=int, default=3000)
    ap.add_argument("files", nargs="*", help="files added whole, one input each (long inputs)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    import sys
    w = sys.stdout.buffer
    for s in FIXED:
        if any(0x80 <= ord(c) <= 0xFF for c in s) and "\\x" not in s and s.isascii() is False \
                and all(ord(c) < 0x100 for c in s) and s.startswith(("hello\xff", "\xc3", "\xe2", "\xf0", "\x80", "\xed", "\xc0", "ab\xfe", "\xf8")):
            w.write(escape(s.encode("latin-1")) + b"\n")  # raw invalid bytes
        else:
            w.write(escape(s) + b"\n")
    for _ in range(a.random):
        w.write(escape(rand_string(rng)) + b"\n")
    for f in a.files:
        w.write(escape(open(f, "rb").read()) + b"\n")


if __name__ == "__main__":
    main()
