#!/usr/bin/env python3
"""Reference outputs of the real Gemma 3 270M (GGUF Q4_K_M) computed by transformers, for the kwx Rust tests.

What
    Writes two small JSON fixtures under crates/kwx-core/tests/fixtures/real_gemma3_270m/:
    - reference.json: for a dozen English and Korean prompts (plain sentences, questions, chat-formatted turns,
      one prompt longer than the 512-token sliding window), the input ids, the top-10 next-token ids and f32
      logits at the last position, how robust that top-10 order is (gaps between neighbouring ranks, rank 10
      vs 11), and the greedy continuation of 16 tokens (ids, text, and the smallest top-1/top-2 margin on the
      way). Full-vocabulary logits are not stored.
    - tokenizer_check.json: for 20 sentences, the ids that tokenizer.json gives without special tokens.

Why
    The Rust loader dequantizes the GGUF itself and runs its own Gemma 3 forward pass. This script is an
    independent path: gguf-py dequantizes every tensor, the weights are renamed into a Hugging Face state dict
    (norms stored as w+1 become w), and transformers' own Gemma3ForCausalLM (f32, eager attention) produces the
    numbers. Both sides see bit-identical dequantized weights, so logits should agree to accumulation-order
    noise (~1e-4); top-10 ids and greedy tokens should agree exactly except where the JSON flags near ties.

How to run (CPU only, ~2 minutes at 1 thread, ~4.5 GB peak RAM; no network; output is deterministic):
    /work/pyenv/bin/python scripts/make_real_model_reference.py \
        [--gguf ~/.cache/kwx/gemma-3-270m/gemma-3-270m-q4_k_m.gguf] \
        [--tokenizer ~/.cache/kwx/gemma-3-270m/tokenizer.json] [--out DIR] [--threads N]
    Needs torch, transformers 5.x, tokenizers, numpy and gguf (gguf-py). The model and tokenizer come from
    package registries (see shared/reference/PEERS.md, "The real model and tokenizer"); never commit them.
    The script asserts strict weight loading and the known sanity continuation
    "<bos>Paris is the capital of" -> " France and is the most visited city in the world".
"""

import os

# Torch with 2 OpenMP threads on a busy 2-core machine spins badly (PEERS.md); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import hashlib
import json
import platform
import sys
import time

import numpy as np
import torch

import gguf
import tokenizers
import transformers
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(REPO, "crates", "kwx-core", "tests", "fixtures", "real_gemma3_270m")
CACHE = os.path.expanduser("~/.cache/kwx/gemma-3-270m")

TOP_K = 10
NEW_TOKENS = 16
NEAR_TIE = 0.05  # logit gap below which an order comparison is fragile
SANITY_PROMPT = "Paris is the capital of"
SANITY_EXPECTED = " France and is the most visited city in the world"

CHAT = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"

# Long prompt (> sliding window of 512) so the sliding/global split matters on the real model.
LONG_EN_PARAGRAPH = (
    "The patient information leaflet explains how the medicine works, who should not take it, and what to do "
    "if a dose is missed. Read it carefully before the first use and keep it with the package. "
)

PROMPTS = [
    # (name, lang, text)  -- text is passed to tokenizer.json, which prepends <bos> itself.
    ("en_paris", "en", SANITY_PROMPT),
    ("en_fox", "en", "The quick brown fox"),
    ("en_question", "en", "What is the boiling point of water at sea level?"),
    ("en_pharma", "en", "Acetaminophen is commonly used to relieve mild pain and reduce fever. Unlike ibuprofen, it"),
    ("en_chat", "en", CHAT.format("What are the most common side effects of ibuprofen?")),
    ("ko_pas", "ko", "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다."),
    ("ko_capital", "ko", "대한민국의 수도는"),
    (
        "ko_long_pharma",
        "ko",
        "이 약은 식후 30분에 물과 함께 복용하십시오. 부작용으로는 두통, 어지러움, 졸음 등이 나타날 수 있으며, "
        "증상이 지속되거나 심해지면 즉시 의사 또는 약사와 상담하십시오. 임산부 또는 수유부는",
    ),
    ("ko_question", "ko", "한국어 의약품 설명서에서 핵심 키워드를 추출하는 가장 좋은 방법은 무엇인가요?"),
    ("ko_chat", "ko", CHAT.format("두통이 심할 때 먹을 수 있는 약을 추천해 주세요.")),
    ("en_long_window", "en", LONG_EN_PARAGRAPH * 14 + "In short, the leaflet tells you"),
]

EXTRA_TOKENIZER_SENTENCES = [
    "Hello, world!",
    "  leading spaces and\ttabs\nand newlines  ",
    "Numbers: 3.14159, 2,718 and 1e-6.",
    "Email me at someone@example.com or visit https://example.org/path?q=1.",
    "emoji 🙂🚀 and accents: café, naïve, Ærø.",
    "타이레놀 500mg 1정을 하루 3회 복용합니다.",
    "비스테로이드성 소염진통제(NSAIDs)는 위장 장애를 일으킬 수 있습니다.",
    "소아용 해열제는 체중에 따라 용량을 조절해야 합니다.",
    "한글과 English가 섞인 문장, 그리고 숫자 123.",
    "def f(x):\n    return x ** 2  # square",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_gguf(path):
    """Dequantize every tensor with gguf-py; returns {gguf_name: float32 ndarray in PyTorch layout}, metadata."""
    reader = GGUFReader(path)
    tensors = {}
    types = {}
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims innermost-first
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            arr = np.asarray(t.data, dtype=np.float32)
        else:
            arr = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        tensors[t.name] = np.ascontiguousarray(arr.reshape(shape))
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return reader, tensors, types


def build_config(reader, n_vocab):
    arch = field(reader, "general.architecture")
    assert arch == "gemma3", arch
    g = lambda k: field(reader, f"gemma3.{k}")  # noqa: E731
    n_layers = int(g("block_count"))
    key_len, val_len = int(g("attention.key_length")), int(g("attention.value_length"))
    assert key_len == val_len, (key_len, val_len)
    pattern = int(field(reader, "gemma3.attention.sliding_window_pattern", 6))  # llama.cpp default when absent
    theta_global = float(g("rope.freq_base"))
    # The file has no rope.freq_base_swa; Gemma 3 uses 1e4 for sliding layers (PEERS.md).
    theta_local = float(field(reader, "gemma3.rope.freq_base_swa", 10_000.0))
    cfg = dict(
        vocab_size=n_vocab,
        hidden_size=int(g("embedding_length")),
        intermediate_size=int(g("feed_forward_length")),
        num_hidden_layers=n_layers,
        num_attention_heads=int(g("attention.head_count")),
        num_key_value_heads=int(g("attention.head_count_kv")),
        head_dim=key_len,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=int(g("context_length")),
        rms_norm_eps=1e-6,  # GGUF stores it as f32 (9.99999997e-07)
        pad_token_id=int(field(reader, "tokenizer.ggml.padding_token_id")),
        eos_token_id=int(field(reader, "tokenizer.ggml.eos_token_id")),
        bos_token_id=int(field(reader, "tokenizer.ggml.bos_token_id")),
        tie_word_embeddings=True,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": theta_global},
            "sliding_attention": {"rope_type": "default", "rope_theta": theta_local},
        },
        attention_bias=False,
        query_pre_attn_scalar=256,  # not in the GGUF (llama.cpp ignores it); 256 == head_dim here
        sliding_window=int(g("attention.sliding_window")),
        layer_types=[
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)
        ],
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
    )
    # PEERS.md facts about this exact model.
    expect = dict(
        hidden_size=640, num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        intermediate_size=2048, vocab_size=262144, sliding_window=512, bos_token_id=2, eos_token_id=1,
        pad_token_id=0,
    )
    for k, v in expect.items():
        assert cfg[k] == v, (k, cfg[k], v)
    assert abs(float(g("attention.layer_norm_rms_epsilon")) - 1e-6) < 1e-12
    assert theta_global == 1e6 and theta_local == 1e4
    return cfg


def build_state_dict(t, n_layers):
    """GGUF names -> HF Gemma3ForCausalLM names. Norm weights in GGUF are w+1."""
    sd = {}
    used = set()

    def take(gname, hname, norm=False):
        a = t[gname]
        used.add(gname)
        sd[hname] = torch.from_numpy(a - np.float32(1.0) if norm else a)

    take("token_embd.weight", "model.embed_tokens.weight")
    take("output_norm.weight", "model.norm.weight", norm=True)
    for i in range(n_layers):
        b, h = f"blk.{i}.", f"model.layers.{i}."
        take(b + "attn_norm.weight", h + "input_layernorm.weight", norm=True)
        take(b + "attn_q.weight", h + "self_attn.q_proj.weight")
        take(b + "attn_k.weight", h + "self_attn.k_proj.weight")
        take(b + "attn_v.weight", h + "self_attn.v_proj.weight")
        take(b + "attn_output.weight", h + "self_attn.o_proj.weight")
        take(b + "attn_q_norm.weight", h + "self_attn.q_norm.weight", norm=True)
        take(b + "attn_k_norm.weight", h + "self_attn.k_norm.weight", norm=True)
        take(b + "post_attention_norm.weight", h + "post_attention_layernorm.weight", norm=True)
        take(b + "ffn_norm.weight", h + "pre_feedforward_layernorm.weight", norm=True)
        take(b + "post_ffw_norm.weight", h + "post_feedforward_layernorm.weight", norm=True)
        take(b + "ffn_gate.weight", h + "mlp.gate_proj.weight")
        take(b + "ffn_up.weight", h + "mlp.up_proj.weight")
        take(b + "ffn_down.weight", h + "mlp.down_proj.weight")
    leftover = sorted(set(t) - used)
    assert not leftover, f"GGUF tensors not mapped: {leftover}"
    return sd


def load_model(cfg_kwargs, sd):
    config = Gemma3TextConfig(**cfg_kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).to(torch.float32).eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    expected = model.state_dict()
    for k, v in sd.items():
        assert k in expected, f"unexpected key {k}"
        assert tuple(expected[k].shape) == tuple(v.shape), (k, tuple(expected[k].shape), tuple(v.shape))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= {"lm_head.weight"}, missing
    model.tie_weights()
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight), "lm_head not tied"
    for k, v in sd.items():  # loaded exactly
        assert torch.equal(model.state_dict()[k], v), k
    return config, model


@torch.no_grad()
def last_logits(model, ids):
    out = model(input_ids=torch.tensor([ids], dtype=torch.long), logits_to_keep=1, use_cache=False)
    return out.logits[0, -1].float()


@torch.no_grad()
def greedy(model, ids, n):
    """Full recompute each step (no KV cache), exactly NEW_TOKENS tokens, no stop at EOS."""
    seq = list(ids)
    new, margins = [], []
    for _ in range(n):
        lg = last_logits(model, seq)
        top2 = torch.topk(lg, 2)
        nxt = int(top2.indices[0])
        margins.append(float(top2.values[0] - top2.values[1]))
        new.append(nxt)
        seq.append(nxt)
    return new, margins


def topk_record(lg):
    vals, idx = torch.topk(lg, TOP_K + 1)
    vals = [float(v) for v in vals]
    idx = [int(i) for i in idx]
    gaps = [vals[i] - vals[i + 1] for i in range(TOP_K - 1)]
    gap_10_11 = vals[TOP_K - 1] - vals[TOP_K]
    return dict(
        top10_ids=idx[:TOP_K],
        top10_logits=vals[:TOP_K],
        logit11_id=idx[TOP_K],
        logit11=vals[TOP_K],
        top1_minus_top10=vals[0] - vals[TOP_K - 1],
        min_adjacent_gap_in_top10=min(gaps),
        gap_rank10_rank11=gap_10_11,
        # Consumers: compare ids in order when this is true; otherwise compare positions whose neighbouring gaps
        # exceed NEAR_TIE in order, and the rest as a set.
        top10_order_robust=min(gaps) >= NEAR_TIE,
        # Ranks 1..k are separated from each other and from rank k+1 by >= NEAR_TIE: their order is robust.
        robust_order_prefix=next((i for i, g in enumerate(gaps + [gap_10_11]) if g < NEAR_TIE), TOP_K),
        # If false, rank 10 and 11 nearly tie: compare only the top 9 as a set membership test.
        top10_set_robust=gap_10_11 >= NEAR_TIE,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--tokenizer", default=os.path.join(CACHE, "tokenizer.json"))
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(args.threads)

    gguf_sha = sha256(args.gguf)
    reader, tensors, types = read_gguf(args.gguf)
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    cfg_kwargs = build_config(reader, n_vocab)
    sd = build_state_dict(tensors, cfg_kwargs["num_hidden_layers"])
    del tensors
    config, model = load_model(cfg_kwargs, sd)
    del sd
    t_load = time.time() - t0
    print(f"loaded in {t_load:.1f}s; tensor types {types}", flush=True)

    tok = Tokenizer.from_file(args.tokenizer)
    # tokenizer.json has 262,144 ids plus the added `<image_soft_token>` = 262144 (multimodal only, outside the
    # text model's vocabulary); every id an encoding below produces is asserted to be < n_vocab.
    assert tok.get_vocab_size(with_added_tokens=False) == n_vocab, tok.get_vocab_size(with_added_tokens=False)

    def encode(text):
        ids = tok.encode(text).ids  # the post-processor prepends <bos>
        assert ids[0] == config.bos_token_id and ids[1] != config.bos_token_id, ids[:3]
        assert max(ids) < n_vocab, max(ids)
        return ids

    def decode(ids):
        return tok.decode(ids, skip_special_tokens=False)

    # 2. Sanity: greedy 12 tokens after <bos>Paris is the capital of.
    sanity_ids = encode(SANITY_PROMPT)
    assert sanity_ids == [2, 50429, 563, 506, 5279, 529], sanity_ids
    s_new, _ = greedy(model, sanity_ids, 12)
    s_text = decode(s_new)
    print(f"sanity: {SANITY_PROMPT!r} -> {s_text!r}", flush=True)
    assert s_text.startswith(SANITY_EXPECTED), s_text
    # Same thing through HF generate (KV cache), as a cross-check of the recompute loop.
    with torch.no_grad():
        gen = model.generate(
            torch.tensor([sanity_ids]), max_new_tokens=12, do_sample=False, top_k=None, top_p=None,
            temperature=None, pad_token_id=config.pad_token_id,
        )
    assert gen[0, len(sanity_ids):].tolist() == s_new, (gen[0].tolist(), s_new)

    # 3. Prompts.
    records = []
    for name, lang, text in PROMPTS:
        ts = time.time()
        ids = encode(text)
        lg = last_logits(model, ids)
        rec = dict(name=name, lang=lang, text=text, n_tokens=len(ids), ids=ids)
        rec.update(topk_record(lg))
        rec["top10_tokens"] = [tok.id_to_token(i) for i in rec["top10_ids"]]
        g_ids, margins = greedy(model, ids, NEW_TOKENS)
        assert g_ids[0] == rec["top10_ids"][0]
        with torch.no_grad():  # cross-check the recompute loop against HF generate (KV cache)
            gen = model.generate(
                torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, top_k=None, top_p=None,
                temperature=None, pad_token_id=config.pad_token_id, eos_token_id=None,
            )
        assert gen[0, len(ids):].tolist() == g_ids, (name, gen[0, len(ids):].tolist(), g_ids)
        rec.update(
            greedy_ids=g_ids,
            greedy_text=decode(g_ids),
            greedy_min_top1_top2_margin=min(margins),
            greedy_step_margins=[round(m, 4) for m in margins],
        )
        if len(ids) > config.sliding_window:
            # Show that the sliding window actually changes this prompt's output.
            saved = [layer.self_attn.sliding_window for layer in model.model.layers]
            saved_cfg = model.config.sliding_window
            model.config.sliding_window = 1 << 20
            for layer in model.model.layers:
                if layer.self_attn.sliding_window is not None:
                    layer.self_attn.sliding_window = 1 << 20
            lg_full = last_logits(model, ids)
            model.config.sliding_window = saved_cfg
            for layer, s in zip(model.model.layers, saved):
                layer.self_attn.sliding_window = s
            assert torch.equal(last_logits(model, ids), lg), "restoring the sliding window failed"
            rec["max_abs_logit_change_without_sliding_window"] = float((lg_full - lg).abs().max())
        records.append(rec)
        flags = "" if rec["top10_order_robust"] and rec["top10_set_robust"] else "  [near tie]"
        print(
            f"{name:16s} n={len(ids):4d} gap10/11={rec['gap_rank10_rank11']:.4f} "
            f"minadj={rec['min_adjacent_gap_in_top10']:.4f} greedy_margin={rec['greedy_min_top1_top2_margin']:.4f} "
            f"({time.time() - ts:.1f}s){flags}\n    -> {rec['greedy_text']!r}",
            flush=True,
        )

    n_en = sum(r["lang"] == "en" for r in records)
    n_ko = sum(r["lang"] == "ko" for r in records)
    assert n_en >= 4 and n_ko >= 4
    assert any(r["lang"] == "ko" and r["n_tokens"] > 30 for r in records)

    summary = dict(
        smallest_gap_rank10_rank11=min(r["gap_rank10_rank11"] for r in records),
        smallest_adjacent_gap_in_top10=min(r["min_adjacent_gap_in_top10"] for r in records),
        smallest_greedy_top1_top2_margin=min(r["greedy_min_top1_top2_margin"] for r in records),
        prompts_with_top10_set_near_tie=[r["name"] for r in records if not r["top10_set_robust"]],
        prompts_with_top10_order_near_tie=[r["name"] for r in records if not r["top10_order_robust"]],
        prompts_with_greedy_near_tie=[r["name"] for r in records if r["greedy_min_top1_top2_margin"] < NEAR_TIE],
        max_abs_top10_logit=max(abs(v) for r in records for v in r["top10_logits"]),
    )

    elapsed = time.time() - t0
    reference = dict(
        description=(
            "Gemma 3 270M (GGUF Q4_K_M) reference outputs from transformers Gemma3ForCausalLM in f32, eager "
            "attention, weights dequantized by gguf-py (norms = gguf - 1, tied lm_head). Logits are those of "
            "the last prompt position; greedy continuations are exactly new_tokens tokens (argmax, full "
            "recompute, no stop at EOS). Generated by scripts/make_real_model_reference.py."
        ),
        model=dict(
            gguf_file=os.path.basename(args.gguf),
            gguf_sha256=gguf_sha,
            gguf_bytes=os.path.getsize(args.gguf),
            gguf_tensor_types=types,
            tokenizer_json_sha256=sha256(args.tokenizer),
        ),
        tools=dict(
            python=platform.python_version(),
            torch=torch.__version__,
            transformers=transformers.__version__,
            tokenizers=tokenizers.__version__,
            numpy=np.__version__,
            gguf_py=_version("gguf"),
            torch_threads=torch.get_num_threads(),
            runtime_s=round(elapsed, 1),
        ),
        config=dict(cfg_kwargs, attn_implementation="eager", dtype="float32"),
        settings=dict(
            top_k=TOP_K, new_tokens=NEW_TOKENS, near_tie_threshold=NEAR_TIE, bos_prepended_by_tokenizer=True,
            decode="tokenizers.Tokenizer.decode(ids, skip_special_tokens=False)",
        ),
        sanity=dict(
            text=SANITY_PROMPT, ids=sanity_ids, greedy_12_ids=s_new, greedy_12_text=s_text,
            expected_prefix=SANITY_EXPECTED,
        ),
        summary=summary,
        prompts=records,
    )

    # 5. Tokenizer cross-check (no special tokens).
    sentences = [text for _, _, text in PROMPTS] + EXTRA_TOKENIZER_SENTENCES
    sentences = sentences[:20]
    assert len(sentences) == 20
    tok_check = dict(
        description=(
            "Ids that tokenizer.json (HF tokenizers) gives for each text with add_special_tokens=False; the "
            "chat markers are added tokens and map to single ids. Generated by "
            "scripts/make_real_model_reference.py."
        ),
        tokenizer_json_sha256=reference["model"]["tokenizer_json_sha256"],
        tokenizers=tokenizers.__version__,
        cases=[
            dict(text=s, ids=tok.encode(s, add_special_tokens=False).ids) for s in sentences
        ],
    )
    for c in tok_check["cases"]:
        assert tok.decode(c["ids"], skip_special_tokens=False) == c["text"], c["text"]

    os.makedirs(args.out, exist_ok=True)
    ref_path = os.path.join(args.out, "reference.json")
    tok_path = os.path.join(args.out, "tokenizer_check.json")
    with open(ref_path, "w", encoding="utf-8") as f:
        f.write(pretty(reference) + "\n")
    with open(tok_path, "w", encoding="utf-8") as f:
        f.write(pretty(tok_check) + "\n")
    for p in (ref_path, tok_path):
        with open(p, encoding="utf-8") as f:
            assert json.load(f) == (reference if p == ref_path else tok_check)
    for p in (ref_path, tok_path):
        size = os.path.getsize(p)
        assert size < 100_000, (p, size)
        print(f"wrote {p} ({size} bytes)")
    print(json.dumps(summary, indent=1))
    print(f"total {elapsed:.1f}s")


def pretty(o, ind=0):
    """Indented JSON, but lists of scalars (ids, logits, token strings) stay on one line."""
    pad, pad1 = " " * ind, " " * (ind + 1)
    if isinstance(o, dict):
        if not o:
            return "{}"
        items = [f"{pad1}{json.dumps(k, ensure_ascii=False)}: {pretty(v, ind + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(o, list) and not all(isinstance(v, (int, float, str, bool)) or v is None for v in o):
        return "[\n" + ",\n".join(pad1 + pretty(v, ind + 1) for v in o) + "\n" + pad + "]"
    return json.dumps(o, ensure_ascii=False)


def _version(dist):
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # pragma: no cover
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
