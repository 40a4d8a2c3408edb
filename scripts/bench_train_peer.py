#!/usr/bin/env python3
"""PyTorch + PEFT training throughput on CPU: the peer of kwx's training benchmark.

One training step = forward on random token ids with labels, attention by --attn (default sdpa,
transformers' default) (every position labelled; transformers
shifts them internally), loss.backward(), AdamW step, zero_grad. Random weights.

--precision as kwx's (TrainConfig.precision): f32; or bf16/f16 products under
torch.autocast("cpu") with f32 master weights, where LoRA loads the frozen base in the half type
(PEFT keeps the adapter in f32, autocast_adapter_dtype) and f16 scales the loss with
torch.amp.GradScaler (initial scale 65536, growth interval 2000). After one untimed warm-up step, --steps steps are timed. Prints one JSON line:
    {"peer": "torch+peft", "shape", "mode", "threads", "batch", "seq",
     "tokens_per_s", "step_s", "peak_rss_mib", ...}
peak_rss_mib is the process's peak resident set (getrusage ru_maxrss), model build included.

Shapes:
    small  Gemma 3 text, vocab 8000, hidden 256, 4 layers, 4 heads, 1 KV head, head_dim 64,
           intermediate 1024 (about 5.9M parameters)
    270m   the real Gemma 3 270M config (vocab 262144, hidden 640, 18 layers, 4 heads, 1 KV head,
           head_dim 256, intermediate 2048, sliding window 512, 5 sliding + 1 full layers,
           query_pre_attn_scalar 256, tied embeddings), random weights
Modes:
    lora   PEFT LoRA r 8, alpha 16, target_modules "all-linear", dropout 0; AdamW on the LoRA weights
    lora-tokens  the same plus trainable_token_indices = the last 32 ids (new domain tokens)
    full   every parameter trainable; AdamW on all of them

Run with a passive OpenMP wait policy so idle threads do not spin (set before Python starts;
the script also sets it as a default before importing torch):
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_train_peer.py --shape small --mode lora --threads 1
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from transformers import Gemma3ForCausalLM, Gemma3TextConfig  # noqa: E402

import peft  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402


def config(shape, attn):
    rope = {
        "full_attention": {"rope_type": "default", "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
    }
    if shape == "small":
        return Gemma3TextConfig(
            vocab_size=8000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=1, head_dim=64, query_pre_attn_scalar=64,
            sliding_window=512, layer_types=["sliding_attention"] * 3 + ["full_attention"],
            max_position_embeddings=32768, tie_word_embeddings=True, rope_parameters=rope,
            pad_token_id=0, eos_token_id=1, bos_token_id=2, attn_implementation=attn,
        )
    if shape == "270m":
        layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)]
        return Gemma3TextConfig(
            vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
            num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
            sliding_window=512, layer_types=layer_types, max_position_embeddings=32768,
            tie_word_embeddings=True, rope_parameters=rope,
            pad_token_id=0, eos_token_id=1, bos_token_id=2, attn_implementation=attn,
        )
    raise ValueError(shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["small", "270m"], default="small")
    ap.add_argument("--mode", choices=["lora", "lora-tokens", "full"], default="lora")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="timed steps, after 1 warm-up step")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa",
                    help="transformers' attention implementation (sdpa is its default)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = config(args.shape, args.attn)
    model = Gemma3ForCausalLM(cfg).to(torch.float32)
    total_params = sum(p.numel() for p in model.parameters())
    half = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}[args.precision]
    if args.mode in ("lora", "lora-tokens") and half is not None:
        model = model.to(half)  # the frozen base in the half type; the adapter stays f32
    if args.mode in ("lora", "lora-tokens"):
        tokens = list(range(cfg.vocab_size - 32, cfg.vocab_size)) if args.mode == "lora-tokens" else None
        model = get_peft_model(
            model,
            LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0, bias="none",
                       task_type="CAUSAL_LM", trainable_token_indices=tokens),
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, cfg.vocab_size, (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)

    scaler = torch.amp.GradScaler("cpu", init_scale=65536.0, growth_interval=2000) if args.precision == "f16" else None

    def step():
        with torch.autocast("cpu", dtype=half, enabled=half is not None):
            loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    step()  # warm-up (allocates optimizer state)
    t0 = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    elapsed = time.perf_counter() - t0

    step_s = elapsed / args.steps
    out = {
        "peer": "torch+peft",
        "shape": args.shape,
        "mode": args.mode,
        "precision": args.precision,
        "threads": args.threads,
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_s": args.batch * args.seq / step_s,
        "step_s": step_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "steps": args.steps,
        "total_params": total_params,
        "trainable_params": trainable,
        "last_loss": losses[-1],
        "torch": torch.__version__,
        "peft": peft.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "attn": args.attn,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
