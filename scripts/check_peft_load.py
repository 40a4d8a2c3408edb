#!/usr/bin/env python3
"""Checks that a LoRA adapter written by kwx loads in PEFT and gives kwx's logits.

    python scripts/check_peft_load.py --base DIR --adapter DIR --expected FILE.safetensors \
        [--ids FILE.json] [--record OUT.json] [--tol 1e-4]

- loads the base model (transformers, eager attention, f32) and the adapter with
  PeftModel.from_pretrained (unmerged, eval mode);
- checks that every tensor in adapter_model.safetensors was consumed by PEFT and that PEFT
  expected no tensor the file lacks: the file's key set must equal PEFT's own adapter state dict
  (get_peft_model_state_dict) key set, shapes and values equal; the file is also loaded a second
  time through set_peft_model_state_dict and its unexpected_keys must be empty; any "missing
  adapter keys" warning from PEFT fails the check too;
- runs the input ids from --ids (key "input_ids"; default: expected.json next to --expected) and
  compares with the "logits" tensor in --expected ([seq, vocab] or [1, seq, vocab]);
- prints PEFT's parsed config (r, alpha, scale, targets, ...) and the max abs diff;
- writes {peft, torch, transformers, max_abs_diff, passed, date, ...} to --record if given.
Exit code 0 when passed (diff <= tol and keys clean), 1 otherwise.
"""

import argparse
import datetime
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never ask the Hub; everything is local

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import peft
from peft import PeftModel
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from peft.utils.save_and_load import load_peft_weights


def versions():
    return {"peft": peft.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def fail(args, problem):
    """PEFT could not even load the adapter: report, record, exit 1."""
    print("PROBLEM:", problem)
    print("FAILED")
    if args.record:
        with open(args.record, "w") as f:
            json.dump({**versions(), "max_abs_diff": None, "tol": args.tol, "passed": False, "date": now(),
                       "base": args.base, "adapter": args.adapter, "expected": args.expected,
                       "problems": [problem]}, f, indent=2)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--expected", required=True, help="safetensors holding 'logits'")
    ap.add_argument("--ids", help="json with 'input_ids' (default: expected.json beside --expected)")
    ap.add_argument("--record", help="write a JSON result here")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    ids_path = args.ids or os.path.join(os.path.dirname(os.path.abspath(args.expected)), "expected.json")
    with open(ids_path) as f:
        ids = json.load(f)["input_ids"]
    if ids and isinstance(ids[0], list):
        assert len(ids) == 1, "only one sequence is supported"
        ids = ids[0]

    problems = []
    base = AutoModelForCausalLM.from_pretrained(args.base, attn_implementation="eager", dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = PeftModel.from_pretrained(base, args.adapter, is_trainable=False)
        except Exception as e:  # e.g. KeyError when a trainable-token / modules_to_save key is absent
            fail(args, f"PeftModel.from_pretrained raised {type(e).__name__}: {e}")
    for w in caught:
        msg = str(w.message)
        if "missing adapter keys" in msg.lower() or "unexpected" in msg.lower():
            problems.append(f"PEFT warning: {msg}")
    model = model.float().eval()
    cfg = model.peft_config["default"]

    # 1. Every key in the file consumed, nothing missing.
    file_sd = load_file(os.path.join(args.adapter, "adapter_model.safetensors"))
    # PEFT's save_embedding_layers="auto" looks at base_model_name_or_path; point it at --base.
    cfg.base_model_name_or_path = os.path.abspath(args.base)
    # Required: what PEFT itself would save for this adapter. Allowed extra: full embedding /
    # lm_head weights, which PEFT adds when the embedding is a LoRA target or was resized.
    peft_sd = get_peft_model_state_dict(model, adapter_name="default", save_embedding_layers="auto")
    peft_sd_max = get_peft_model_state_dict(model, adapter_name="default", save_embedding_layers=True)
    unexpected = sorted(set(file_sd) - set(peft_sd_max))
    missing = sorted(set(peft_sd) - set(file_sd))
    peft_sd = {**peft_sd_max, **peft_sd}
    mismatched = []
    for k in sorted(set(file_sd) & set(peft_sd)):
        a, b = file_sd[k], peft_sd[k].detach().cpu()
        if a.shape != b.shape:
            mismatched.append(f"{k}: file {list(a.shape)} vs PEFT {list(b.shape)}")
        elif not torch.equal(a.to(b.dtype), b):
            mismatched.append(f"{k}: values differ (max {float((a.to(b.dtype) - b).abs().max()):.3g})")
    # Second opinion straight from PEFT's loader: unexpected keys reported by load_state_dict.
    reload = set_peft_model_state_dict(model, load_peft_weights(args.adapter, device="cpu"), adapter_name="default")
    unexpected_loader = sorted(reload.unexpected_keys)
    if unexpected:
        problems.append(f"keys in the file that PEFT did not consume: {unexpected}")
    if missing:
        problems.append(f"adapter keys PEFT expected but the file lacks: {missing}")
    if mismatched:
        problems.append(f"tensors loaded differently from the file: {mismatched}")
    if unexpected_loader:
        problems.append(f"set_peft_model_state_dict unexpected_keys: {unexpected_loader}")

    # 2. Logits.
    expected = load_file(args.expected)["logits"].float()
    if expected.dim() == 3:
        expected = expected[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    if logits.shape != expected.shape:
        problems.append(f"logits shape {list(logits.shape)} vs expected {list(expected.shape)}")
        diff = float("inf")
    else:
        diff = float((logits - expected).abs().max())

    targets = cfg.target_modules
    targets = sorted(targets) if isinstance(targets, (set, list, tuple)) else targets
    scale = cfg.lora_alpha / (cfg.r ** 0.5 if cfg.use_rslora else cfg.r)
    parsed = {
        "peft_type": str(cfg.peft_type.value if hasattr(cfg.peft_type, "value") else cfg.peft_type),
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "use_rslora": cfg.use_rslora,
        "scale": scale,
        "target_modules": targets,
        "modules_to_save": cfg.modules_to_save,
        "trainable_token_indices": cfg.trainable_token_indices,
        "rank_pattern": cfg.rank_pattern,
        "alpha_pattern": cfg.alpha_pattern,
        "use_dora": cfg.use_dora,
        "bias": cfg.bias,
    }
    wrapped = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A})
    passed = diff <= args.tol and not problems
    print("PEFT config:", json.dumps(parsed))
    print(f"LoRA-wrapped module names: {wrapped}; adapter tensors in file: {len(file_sd)}, consumed: {len(set(file_sd) & set(peft_sd))}")
    print(f"max abs diff vs kwx logits: {diff:.3g} (tol {args.tol:g}) over {list(expected.shape)}")
    for p in problems:
        print("PROBLEM:", p)
    print("PASSED" if passed else "FAILED")

    if args.record:
        result = {
            **versions(),
            "max_abs_diff": diff,
            "tol": args.tol,
            "passed": passed,
            "date": now(),
            "base": args.base,
            "adapter": args.adapter,
            "expected": args.expected,
            "config": parsed,
            "adapter_keys": len(file_sd),
            "problems": problems,
        }
        with open(args.record, "w") as f:
            json.dump(result, f, indent=2)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
