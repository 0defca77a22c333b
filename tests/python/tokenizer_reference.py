#!/usr/bin/env python3
"""tests/python/tokenizer_reference.py — reference token ids for tessera's tokenizer test, from Hugging Face.

Usage: tokenizer_reference.py MODEL.gguf OUTFILE.json

Which Hugging Face path builds the reference (and why):
  transformers 4.46's AutoTokenizer.from_pretrained(dir, gguf_file=...) does load this GGUF, but its converter
  (integrations/ggml.py, GGUFLlamaConverter for a "gpt2" vocabulary) ignores tokenizer.ggml.pre: it uses a bare
  ByteLevel pre-tokenizer, so SmolLM2's per-digit split (tokenizer.json: Sequence[Digits(individual_digits),
  ByteLevel]) is lost, and it swaps bos/eos. That is not the model's tokenizer. So the reference is the
  `tokenizers` library built from the GGUF metadata exactly as the model's own tokenizer.json describes it
  (BPE vocab + merges, the pre-tokenizer named by tokenizer.ggml.pre, ByteLevel decoder, control tokens as
  special added tokens), wrapped in transformers' PreTrainedTokenizerFast for apply_chat_template. The JSON
  records this choice ("reference") and how many strings the AutoTokenizer GGUF path would disagree on.

Output: the strings (>= 1000, deterministic, fixed seed) with their ids (parse_special on and off), random id
sequences with their decoded text, chat-template renderings, and a tokenizer.json + tokenizer_config.json
written to OUTFILE.hf/ so the C++ test can load the same tokenizer through its tokenizer.json path too, and
the same vocabulary behind GPT-2's and Llama-3's pre-tokenizers (OUTFILE.gpt-2/, OUTFILE.llama-bpe/, with
Llama-3's ignore_merges) with their ids, to cover those pre-tokenizers as well.
"""
import json
import os
import random
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SEED = 20240611
GPT2_REGEX = None  # ByteLevel(use_regex=True) carries it
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def pre_tokenizer_for(pre):
    """The pre-tokenizer HF's tokenizer.json uses for each llama.cpp pre-tokenizer name."""
    if pre in ("gpt-2", "gpt2", "default"):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    if pre in ("llama-bpe", "llama3"):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    if pre == "qwen2":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    raise SystemExit(f"unsupported tokenizer.ggml.pre {pre!r}")


def build_variant(tokens, merges, types, pre):
    """The same vocabulary behind another pre-tokenizer (GPT-2's, Llama-3's), to cover those code paths too."""
    ignore_merges = pre in ("llama-bpe", "llama3")  # Llama-3's tokenizer.json sets it
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False,
                               ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer_for(pre)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    return tok


def build_reference(path):
    r = gguf.GGUFReader(path)
    if field(r, "tokenizer.ggml.model") != "gpt2":
        raise SystemExit(f"{path}: tokenizer.ggml.model is not gpt2")
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    pre = field(r, "tokenizer.ggml.pre") or "default"
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizer_for(pre)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == 4])
    bos = field(r, "tokenizer.ggml.bos_token_id")
    eos = field(r, "tokenizer.ggml.eos_token_id")
    meta = {
        "pre": pre,
        "bos_id": -1 if bos is None else bos,
        "eos_id": -1 if eos is None else eos,
        "add_bos": bool(field(r, "tokenizer.ggml.add_bos_token") or False),
        "chat_template": field(r, "tokenizer.chat_template") or "",
        "vocab_size": len(tokens),
    }
    wrapper = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=tokens[bos] if bos is not None else None,
        eos_token=tokens[eos] if eos is not None else None,
        clean_up_tokenization_spaces=False)
    wrapper.chat_template = meta["chat_template"] or None
    variants = {p: build_variant(tokens, merges, types, p) for p in ("gpt-2", "llama-bpe") if p != pre}
    return tok, wrapper, meta, variants


# --- the strings -----------------------------------------------------------------------------------

FIXED = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n \n", "\t\t  \n", "a  b", "a   b", "a\tb", "a \t b",
    "   leading", "trailing   ", "trailing\n", "\r\n\r\nx\r\n", "line1\nline2\r\nline3\rline4",
    "Hello world", "Hello, world!", "hello   world", "HELLO WORLD",
    "don't", "I'll", "we've", "they're", "she'd", "I'm", "it's", "'s 't 're 've 'm 'll 'd", "DON'T I'LL",
    "'s", "''", "'", "rock 'n' roll", "O'Neil's", " 's", "x's's",
    "0", "7", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-42", "+1e-10", "v1.2.3",
    "2024-06-11T12:34:56Z", "0x1F600", "１２３４", "²³", "½ ¼", "Ⅻ", "٣٤٥", "१२३", "𝟙𝟚𝟛",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#frag",
    "mailto:someone@example.com", "ftp://a.b/c%20d", "C:\\Program Files\\x", "/usr/local/bin/python3",
    "def f(x):\n    return x ** 2\n", "int main() { return 0; }\n", "for (int i = 0; i < n; ++i) {\n\ty += x[i];\n}",
    "if a != b and c >= d:\n\tpass", "<div class=\"x\">&amp;</div>", "SELECT * FROM t WHERE id = 3;",
    "{\"key\": [1, 2, 3], \"v\": null}", "$ ls -la | grep foo > out.txt 2>&1", "#include <vector>",
    "`code` **bold** _it_ ~~s~~", "# Title\n\n- item 1\n- item 2\n", "| a | b |\n|---|---|",
    "😀", "😀😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "I ❤️ NY", "🤖 robots!", "emoji😀inside",
    "日本語のテキスト", "中文字符测试", "한국어 텍스트", "ภาษาไทย", "Tiếng Việt", "Ελληνικά", "Русский текст",
    "עברית", "العربية", "हिन्दी", "বাংলা", "ქართული", "Ꭰ Ꭱ Ꭲ",
    "e\u0301", "a\u0308\u0304", "n\u0303o", "\u0301", "Z\u0351\u0352\u0353a\u0354l\u0355g\u0356o",
    "cafe\u0301 naïve façade", "ﬁ ﬂ", "Å Å", "\u200b", "a\u200bb", "\u200d", "\ufeffbom", "\u00a0", "a\u00a0b",
    "\u00a0\u00a0x", "\u2028", "\u2029", "\u0085", "a\u0085b", "a \u0085b", " \u0085\u0085x", "\u3000全角", "\u1680", "\u202f", "\u205f",
    "\x00", "a\x00b", "\x01\x02\x03", "\x7f", "\x1b[31mred\x1b[0m", "\ufffd", "\uffff", "\U0010ffff",
    "\ue000", "\U000f0000", "ĠĠ", "Ġhello", "Ċ", "âĢĶ", "Ã©", "¡¬®", "\u00ad", "­soft",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>\n",
    "<|im_start|><|im_end|>", "a<|endoftext|>b", " <|im_end|> ", "<|im_start", "im_end|>", "< |im_end| >",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n", "<|endoftext|><|endoftext|>", "<|im_end|><|im_end|>x", "<<|im_end|>>",
    "<repo_name>foo<file_sep>bar.py", "<filename>x<gh_stars>10", "<|eot_id|>", "<s></s>", "[INST] hi [/INST]",
    "\\n", "\\u0041", "%s %d %%", "a" * 300, "ab" * 200, " " * 100, "\n" * 50, "\t" * 20, "1" * 100,
    "x" * 1000, "supercalifragilisticexpialidocious" * 5, "-" * 80, "=" * 40 + "\n", ".....", "!!!???",
    "(((", ")))", "[[]]", "{{}}", "«»", "“quoted” ‘text’", "— – -", "…", "•", "©®™", "€£¥₹", "±×÷", "→←↑↓",
    "∀x∈ℝ: x²≥0", "∑_{i=1}^n i", "α β γ δ", "Ωmega", "ß", "ẞ", "İstanbul", "ǅ", "ﬃ",
]

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "World", "tokenizer", "BPE",
         "transformer", "SmolLM", "model", "serve", "GPU", "cluster", "tensor", "parallel", "naïve", "Zürich",
         "straße", "mañana", "coöperate", "über", "don't", "can't", "it's", "you're", "we'll", "I've", "he'd",
         "I'm", "HTTP", "JSON", "ids", "utf8", "McDonald", "iPhone", "e-mail", "x86_64", "__init__", "camelCase",
         "snake_case", "kebab-case", "CONSTANT", "a", "I", "O"]
PUNCT = list(".,;:!?-_()[]{}<>\"'`~@#$%^&*+=/\\|") + ["...", "--", "->", "=>", "::", "!=", "==", "&&", "||"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\t\t", "    ", "\u00a0", "\u3000", " \t \n "]
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏿", "🎉", "🚀", "🔥", "💯", "🇺🇸", "👩‍💻", "🧑🏽‍🚀", "✨", "⭐", "☕", "🐍",
         "🦀", "❤️", "✅", "❌"]
CJK = ["你好", "世界", "東京", "日本", "中国", "こんにちは", "カタカナ", "ひらがな", "漢字", "한국", "안녕하세요",
       "謝謝", "学习", "机器", "模型"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<|im_start|>user\n",
            "<|im_start|>assistant\n", "<|im_end", "|>"]
# Blocks whose characters are long assigned (so Unicode-version differences between regex engines do not
# matter): Latin-1, Latin Extended, Greek, Cyrillic, Hebrew, Arabic, Devanagari, Thai, Hangul, CJK, symbols.
BLOCKS = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff), (0x5d0, 0x5ea),
          (0x620, 0x64a), (0x660, 0x669), (0x900, 0x97f), (0xe01, 0xe5b), (0x2000, 0x206f), (0x20a0, 0x20bf),
          (0x2100, 0x218b), (0x2190, 0x21ff), (0x2200, 0x22ff), (0x2460, 0x24ff), (0x2500, 0x257f),
          (0x3000, 0x303f), (0x3041, 0x3096), (0x30a1, 0x30fa), (0x4e00, 0x9fa5), (0xac00, 0xd7a3),
          (0xff01, 0xff5e), (0x1f300, 0x1f5ff), (0x1f600, 0x1f64f), (0x1d400, 0x1d7ff)]


def random_fragment(rng):
    k = rng.random()
    if k < 0.25:
        w = rng.choice(WORDS)
        return rng.choice([w, w.upper(), w.capitalize(), " " + w, " " + w])
    if k < 0.40:
        return rng.choice(SPACES)
    if k < 0.50:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))
    if k < 0.60:
        return rng.choice(PUNCT)
    if k < 0.67:
        return rng.choice(EMOJI)
    if k < 0.74:
        return rng.choice(CJK)
    if k < 0.77:
        return rng.choice(SPECIALS)
    if k < 0.80:
        return rng.choice(["'s", "'t", "'ll", "'re", "'ve", "'m", "'d", "'S", "'LL"])
    if k < 0.95:
        lo, hi = rng.choice(BLOCKS)
        return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6)))
    # anything at all (no surrogates): may hit characters only newer Unicode versions know
    out = []
    for _ in range(rng.randint(1, 4)):
        cp = rng.randint(0, 0x2FFFF)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xFFFD
        out.append(chr(cp))
    return "".join(out)


def make_strings(n_random=1100):
    rng = random.Random(SEED)
    strings = list(FIXED)
    for _ in range(n_random):
        strings.append("".join(random_fragment(rng) for _ in range(rng.randint(1, 40))))
    # a few long documents
    for _ in range(5):
        strings.append("".join(random_fragment(rng) for _ in range(rng.randint(500, 1500))))
    return strings


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "Multi\nline\n\ncontent with 😀 and 日本語 and <|im_end|> inside"}],
    [{"role": "assistant", "content": "I start."}, {"role": "user", "content": ""}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "  spaces  "}],
]


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model_path, out_path = sys.argv[1], sys.argv[2]
    tok, wrapper, meta, variant_toks = build_reference(model_path)
    strings = make_strings()

    cases = []
    for s in strings:
        cases.append({"text": s, "ids": tok.encode(s, add_special_tokens=False).ids})
    tok.encode_special_tokens = True
    no_special = [{"text": s, "ids": tok.encode(s, add_special_tokens=False).ids}
                  for s in strings if "<" in s or len(s) < 20]
    tok.encode_special_tokens = False

    rng = random.Random(SEED + 1)
    decode_cases = []
    n = meta["vocab_size"]
    for i in range(300):
        ids = [rng.randrange(n) for _ in range(rng.randint(0, 30))]
        if i % 3 == 0:  # single-byte tokens make ill-formed UTF-8: cut sequences, stray continuation bytes
            byte_ids = [tok.token_to_id(t) for t in tok.get_vocab() if len(t) == 1]
            ids = [rng.choice(byte_ids) if rng.random() < 0.6 else x for x in ids]
        decode_cases.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                             "text_skip_special": tok.decode(ids, skip_special_tokens=True)})

    chats = []
    for msgs in CONVERSATIONS:
        for gen in (False, True):
            text = wrapper.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            chats.append({"messages": msgs, "add_generation_prompt": gen, "text": text,
                          "ids": tok.encode(text, add_special_tokens=False).ids})

    # How far the transformers GGUF path is from this reference (for the record; see the module docstring).
    auto = {"used": False}
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(model_path)),
                                           gguf_file=os.path.basename(model_path))
        bad = [c["text"] for c in cases if at.encode(c["text"], add_special_tokens=False) != c["ids"]]
        auto.update({"loaded": True, "mismatches": len(bad), "examples": bad[:5]})
    except Exception as e:  # noqa: BLE001 — informative only
        auto.update({"loaded": False, "error": f"{type(e).__name__}: {e}"})

    hf_dir = out_path + ".hf"
    os.makedirs(hf_dir, exist_ok=True)
    tok.save(os.path.join(hf_dir, "tokenizer.json"))
    with open(os.path.join(hf_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": wrapper.bos_token, "eos_token": wrapper.eos_token, "add_bos_token": meta["add_bos"],
                   "chat_template": meta["chat_template"]}, f, ensure_ascii=False, indent=1)

    variants = []
    for name, vt in variant_toks.items():
        vdir = out_path + "." + name
        os.makedirs(vdir, exist_ok=True)
        vt.save(os.path.join(vdir, "tokenizer.json"))
        variants.append({"pre": name, "hf_dir": os.path.abspath(vdir),
                         "ids": [vt.encode(s, add_special_tokens=False).ids for s in strings]})

    out = {
        "model": os.path.abspath(model_path),
        "reference": "tokenizers " + __import__("tokenizers").__version__ +
                     " BPE built from the GGUF metadata with the pre-tokenizer HF uses for tokenizer.ggml.pre="
                     + meta["pre"] + ", wrapped in transformers " + __import__("transformers").__version__ +
                     " PreTrainedTokenizerFast for apply_chat_template",
        "seed": SEED,
        **meta,
        "hf_dir": os.path.abspath(hf_dir),
        "cases": cases,
        "no_special_cases": no_special,
        "decode_cases": decode_cases,
        "chats": chats,
        "variants": variants,
        "autotokenizer_gguf": auto,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True)
    print(f"{out_path}: {len(cases)} strings, {len(no_special)} without special parsing, "
          f"{len(decode_cases)} id sequences, {len(chats)} chat renderings; AutoTokenizer(gguf): {auto}")


if __name__ == "__main__":
    main()
