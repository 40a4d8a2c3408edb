#!/usr/bin/env python3
"""PyTorch (transformers, eager) on the work `benches/gemma.rs` measures: a Gemma-3-270M-shaped
model with random f32 weights, prefill of 128 tokens (logits of the last) and one decode step after
them through the KV cache. Prints one JSON line: {"threads", "prefill_ms", "decode_ms"}.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_peer.py --threads 1
"""

import argparse
import copy
import json
import time

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig


def best_of(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1000.0  # median, ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
        sliding_window=512, rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        }, attn_implementation="eager",
    )
    model = Gemma3ForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.tensor([[2]]), torch.randint(3, 262144, (1, 127), generator=g)], dim=1)

    with torch.inference_mode():
        prefill = best_of(lambda: model(ids, logits_to_keep=1, use_cache=True), args.reps)
        out = model(ids, logits_to_keep=1, use_cache=True)
        cache = out.past_key_values
        step = torch.tensor([[17]])
        pos = torch.tensor([128])

        def decode():
            c = copy.deepcopy(cache)
            model(step, past_key_values=c, cache_position=pos, use_cache=True, logits_to_keep=1)

        deep = best_of(lambda: copy.deepcopy(cache), args.reps)
        decode_ms = best_of(decode, args.reps) - deep
    print(json.dumps({"threads": args.threads, "prefill_ms": prefill, "decode_ms": decode_ms}))


if __name__ == "__main__":
    main()
