#!/usr/bin/env python3
"""tests/python/wordpiece_reference.py — reference ids for tessera's WordPiece (BERT) tokenizer, from Hugging Face.

Usage: wordpiece_reference.py MODEL_DIR OUTFILE.json

MODEL_DIR is a BERT-family model directory with tokenizer.json (scripts/fetch-encoder.sh: all-MiniLM-L6-v2).
The reference is the `tokenizers` library loading that same tokenizer.json (padding and truncation switched off,
then truncation switched on per case), cross-checked with transformers' AutoTokenizer on the directory; the
number of strings on which the two disagree is recorded ("transformers_disagree", expected 0).

Output: >= 1000 deterministic strings (fixed seed) — English, punctuation, accents (precomposed and combining),
CJK, emoji, control and format characters, words longer than max_input_chars_per_word, whitespace runs, mixed
case, numbers, Greek, Cyrillic, special-token text — with their ids with and without [CLS]/[SEP], truncation
cases (several max_length values, with and without specials), and decodes (skip_special_tokens on and off).
Only characters assigned since Unicode 9 appear: tokenizers' category tables are older than ICU's, and an
unassigned character (category Cn) is dropped by one and kept by the other.
"""
import json
import os
import random
import sys

from tokenizers import Tokenizer
from transformers import AutoTokenizer

SEED = 20261204

CURATED = [
    "", " ", "hello", "Hello, World!", "The quick brown fox jumps over the lazy dog.",
    "Hey friend!     How are you?!?", "don't can't won't I'm you're they've it's",
    "unaffable", "UNAFFABLE", "playing played plays", "tokenization is fun",
    "café naïve résumé façade coöperate", "Crème brûlée", "señor niño mañana", "über Müller Straße",
    "e\u0301 a\u0300 o\u0308 n\u0303", "Ångström Æsir œuvre Øresund",
    "İstanbul ıI", "ΟΔΟΣ οδος Σίσυφος ΑΘΗΝΑ", "Привет, мир! ЁЖИК", "Ελληνικά και Кириллица",
    "中文字符测试", "我爱北京天安门。", "日本語のテキスト、ひらがな・カタカナ", "한국어 문장입니다", "混合English中文mixed",
    "𠀀𠀁 𪜀 丽", "😀 👍🏽 ❤️ 👨‍👩‍👧 🇫🇷", "emoji😀inside", "a\x00b\x01c\x7fd", "tab\there\nnewline\rreturn",
    "nbsp\u00a0here", "ideographic\u3000space", "line\u2028sep\u2029para", "zero\u200bwidth\u200djoiner",
    "bom\ufeffmark", "replacement\ufffdchar", "private\ue000use", "nel\x85char", "soft\u00adhyphen",
    "x" * 99, "y" * 100, "z" * 101, "ab" * 60, "é" * 100, "é" * 101, "supercalifragilisticexpialidocious" * 4,
    "1234567890", "3.14159 2,718 1e-9 $100 50% #1 @user", "a+b=c <tag> x^2 `code` ~tilde |pipe|",
    "“quoted” ‘single’ «guillemets» — dash – en … ellipsis ¡hola! ¿qué?", "¶§•·†‡※",
    "[CLS] [SEP] [MASK] [PAD] [UNK]", "hello [MASK] world", "[cls] lower case specials", "x[SEP]y",
    "   leading and trailing   ", "\t\n\r ", "multiple\n\n\nnewlines", "MiXeD CaSe WoRdS",
    "Ⅳ ⅳ ① ½ ² ℃ ™ ﬁ ﬀ", "Ａｂｃ　ｆｕｌｌｗｉｄｔｈ", "ǅungla ǈ", "ὈΔΥΣΣΕΎΣ", "ß ẞ ŉ ǰ",
    "अनुच्छेद हिन्दी", "العربية نص", "עברית טקסט", "ภาษาไทย", "Tiếng Việt có dấu",
    "http://example.com/path?query=1&b=2", "user@example.com", "C++ and C# and F#", "__init__ self.x",
]

FRAGMENTS = [
    "the", "of", "and", "tokenizer", "embedding", "sentence", "transformers", "BERT", "MiniLM", "Hello", "WORLD",
    "naïve", "café", "Ñandú", "Zürich", "Ελλάδα", "Москва", "σοφία", "Ωμέγα", "中国", "東京", "서울", "ひらがな",
    "😀", "🚀", "👍🏽", "❤️", "42", "3.14", "2026", "1,000", "don't", "it's", "e\u0301", "o\u0308", "a\u0327",
    "ﬁ", "Ⅻ", "İ", "ǅ", "ß", "ŉ", "\u0301", "\u0300\u0323", "ı",
    "internationalization", "antidisestablishmentarianism", "pneumonoultramicroscopic",
]
CHARS = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
         + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("éèêëñüöäåçøæœßÉÑÜÖ")
         + list("αβγδεζηθλμπσςΣΩάέ") + list("абвгдежзийклмнопЖЩЯё") + list("中文字日本語漢字")
         + list("あいうアイウ가나다") + ["\u0301", "\u0308", "\u0327", "\u0303", "\u20dd"]
         + list("“”‘’«»—–…¡¿·、。「」") + ["😀", "🎉", "👍", "🏽", "\u200d", "\ufe0f"]
         + ["\x00", "\x01", "\x1f", "\x7f", "\x85", "\u200b", "\u200e", "\ufeff", "\ufffd", "\ue000"])
SEPARATORS = [" ", " ", " ", "", "  ", "\t", "\n", "\u00a0", "\u3000", " \r\n ", ",", ". ", "-", "/"]


def random_strings(rng, n):
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # words and fragments
            parts = [rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 12))]
        elif kind == 1:  # random characters
            parts = ["".join(rng.choice(CHARS) for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 8))]
        elif kind == 2:  # mixed
            parts = [rng.choice(FRAGMENTS) if rng.random() < 0.5 else rng.choice(CHARS) for _ in
                     range(rng.randint(1, 20))]
        else:  # long words (around max_input_chars_per_word) and case mixing
            w = "".join(rng.choice(CHARS[:62]) for _ in range(rng.randint(90, 110)))
            parts = [w, rng.choice(FRAGMENTS).upper(), rng.choice(FRAGMENTS).swapcase()]
        text = ""
        for p in parts:
            text += p + rng.choice(SEPARATORS)
        out.append(text if rng.random() < 0.5 else text.strip())
    return out


def main():
    model_dir, out_path = sys.argv[1], sys.argv[2]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    file_max_length = tok.truncation["max_length"] if tok.truncation else 0
    tok.no_padding()
    tok.no_truncation()
    hf = AutoTokenizer.from_pretrained(model_dir)

    rng = random.Random(SEED)
    strings = CURATED + random_strings(rng, 1100)
    cases, disagree = [], 0
    for s in strings:
        plain = tok.encode(s, add_special_tokens=False).ids
        special = tok.encode(s, add_special_tokens=True).ids
        if hf.encode(s, add_special_tokens=False) != plain or hf.encode(s, add_special_tokens=True) != special:
            disagree += 1
        cases.append({"text": s, "ids": plain, "ids_special": special})

    truncation = []
    for i, s in enumerate(strings[::7]):
        for max_length in (1, 2, 3, 5, 16, 128):
            for add_special in (True, False):
                if add_special and max_length < 2:
                    continue  # tokenizers refuses a length below the number of specials
                tok.enable_truncation(max_length=max_length)
                truncation.append({"text": s, "max_length": max_length, "add_special": add_special,
                                   "ids": tok.encode(s, add_special_tokens=add_special).ids})
    tok.no_truncation()

    decodes = []
    for c in cases[::3]:
        for skip in (True, False):
            decodes.append({"ids": c["ids_special"], "skip_special": skip,
                            "text": tok.decode(c["ids_special"], skip_special_tokens=skip)})

    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"model_dir": model_dir, "reference": "tokenizers.Tokenizer.from_file(tokenizer.json)",
                   "transformers_disagree": disagree, "max_length": file_max_length, "cases": cases,
                   "truncation": truncation, "decodes": decodes}, f, ensure_ascii=False)
    print(f"wordpiece_reference: {len(cases)} strings, {len(truncation)} truncation cases, {len(decodes)} decodes,"
          f" transformers disagrees on {disagree}, written to {out_path}")
    if disagree:
        raise SystemExit("wordpiece_reference: transformers and tokenizers disagree; the reference is not sound")


if __name__ == "__main__":
    main()
