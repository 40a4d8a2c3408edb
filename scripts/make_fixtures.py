#!/usr/bin/env python3
"""Builds the tiny Gemma checkpoints and reference outputs under crates/kwx-core/tests/fixtures/gemma.

Each case is a random model of one family, saved by transformers' own `save_pretrained`, plus
`expected.safetensors` (logits at every position, f32) and `expected.json` (input ids, greedy
continuation). The kwx tests compare against these files; Python never runs in the Rust test path.

Run (transformers 5.x, torch; CPU is enough):
    python scripts/make_fixtures.py [--out DIR]

Choices that keep the check honest (see shared/reference/PEERS.md):
- every norm weight is random, so a missing (1 + w) fails;
- softcaps are small enough to bite (the script asserts they change the logits);
- prompts (24 tokens) are three times the sliding window (8);
- MHA, GQA and MQA all appear; weights are stored as f32, bf16 and f16; one case is sharded;
- one config.json is rewritten in the transformers 4.x spelling.
"""

import argparse
import copy
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
)

VOCAB = 512
PROMPT_LEN = 24
GREEDY = 8

CORPUS = [
    "진통과 해열 효과가 있는 파스형 의약품은 임산부와 노인에게 적합합니다.",
    "이 연고는 소염 작용이 있으며 하루 두 번 바릅니다.",
    "주사제는 의사의 처방이 필요합니다. 시럽은 소아에게 편리합니다.",
    "Paris is the capital of France and is the most visited city in the world.",
    "Acetaminophen relieves pain and fever; ibuprofen also reduces inflammation.",
    "두통, 치통, 생리통에 아세트아미노펜 정제를 복용하세요.",
]


def make_tokenizer(path):
    """A small SentencePiece-style BPE (Metaspace, byte fallback) with Gemma's special ids."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 256, special_tokens=specials, min_frequency=2, show_progress=False
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    # Byte-fallback pieces are ordinary vocabulary entries (as in Gemma), not special tokens.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for i in range(256):
        vocab.setdefault(f"<0x{i:02X}>", len(vocab))
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]
    )
    assert tok.get_vocab_size() <= VOCAB, tok.get_vocab_size()
    tok.save(path)
    return tok


def randomize(model, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)  # (1 + w) in [0.5, 1.5]
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            # Round to the storage dtype so the f32 reference sees the stored values.
            p.copy_(p.to(dtype).to(torch.float32))


def reference(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
        seq = list(ids)
        greedy = []
        for _ in range(GREEDY):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
    return logits, greedy


def softcap_bites(cls, config, model, ids, attr):
    """Asserts that a softcap changes the logits: the same weights without it differ."""
    uncapped = copy.deepcopy(config)
    setattr(uncapped, attr, None)
    other = cls(uncapped).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        diff = float((model(torch.tensor([ids])).logits - other(torch.tensor([ids])).logits).abs().max())
    assert diff > 0.1, f"{attr} does not bite (max diff {diff})"
    return diff


def to_v4_config(path, pattern):
    """Rewrites a transformers 5 Gemma 3 config.json in the 4.x spelling."""
    with open(path) as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters")
    cfg.pop("layer_types")
    cfg.pop("_sliding_window_pattern", None)
    cfg["rope_theta"] = rope["full_attention"]["rope_theta"]
    cfg["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
    if rope["full_attention"].get("rope_type", "default") != "default":
        cfg["rope_scaling"] = {
            "rope_type": rope["full_attention"]["rope_type"],
            "factor": rope["full_attention"]["factor"],
        }
    else:
        cfg["rope_scaling"] = None
    cfg["sliding_window_pattern"] = pattern
    cfg["transformers_version"] = "4.50.0"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)


def cases():
    common = dict(vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, bos_token_id=2, attn_implementation="eager")
    yield "gemma1_mha_f32", GemmaForCausalLM, GemmaConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=4, head_dim=12, hidden_act="gelu", tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **common,
    ), torch.float32, {}
    yield "gemma2_gqa_bf16", Gemma2ForCausalLM, Gemma2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, sliding_window=8,
        attn_logit_softcapping=1.0, final_logit_softcapping=3.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **common,
    ), torch.bfloat16, {}
    yield "gemma3_mqa_f16_v4config", Gemma3ForCausalLM, Gemma3TextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention",
                     "sliding_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        **common,
    ), torch.float16, {"v4_pattern": 3}
    yield "gemma3_gqa_sharded_bf16", Gemma3ForCausalLM, Gemma3TextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=32, sliding_window=8,
        final_logit_softcapping=4.0,
        layer_types=["sliding_attention", "full_attention", "sliding_attention",
                     "sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 100000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0},
        },
        **common,
    ), torch.bfloat16, {"shard": "40KB", "tokenizer": True}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "..", "crates", "kwx-core", "tests", "fixtures", "gemma"),
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    for i, (name, cls, config, dtype, opts) in enumerate(cases()):
        out = os.path.join(args.out, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        model = cls(config).eval()
        randomize(model, dtype, seed=100 + i)
        g = torch.Generator().manual_seed(200 + i)
        ids = [2] + torch.randint(3, VOCAB, (PROMPT_LEN - 1,), generator=g).tolist()
        logits, greedy = reference(model, ids)
        notes = {}
        for attr in ("attn_logit_softcapping", "final_logit_softcapping"):
            if getattr(config, attr, None) is not None:
                notes[attr + "_effect"] = softcap_bites(cls, config, model, ids, attr)
        save_kw = {"max_shard_size": opts["shard"]} if "shard" in opts else {}
        model.to(dtype).save_pretrained(out, safe_serialization=True, **save_kw)
        if "v4_pattern" in opts:
            to_v4_config(os.path.join(out, "config.json"), opts["v4_pattern"])
        expected = {"input_ids": ids, "greedy": greedy, "notes": notes}
        if opts.get("tokenizer"):
            tok = make_tokenizer(os.path.join(out, "tokenizer.json"))
            expected["tokenizer"] = [
                {"text": t, "ids": tok.encode(t).ids} for t in CORPUS + ["파스형 연고 🙂 new words"]
            ]
        save_file({"logits": logits.contiguous()}, os.path.join(out, "expected.safetensors"))
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(expected, f, ensure_ascii=False, indent=1)
        # generation_config.json is transformers' own; kwx reads eos from config.json.
        gen = os.path.join(out, "generation_config.json")
        if os.path.exists(gen):
            os.remove(gen)
        print(name, "greedy", greedy, notes)


if __name__ == "__main__":
    main()
