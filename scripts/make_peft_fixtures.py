#!/usr/bin/env python3
"""Builds the PEFT (LoRA) reference fixtures under crates/kwx-peft/tests/fixtures/peft.

Everything is made by transformers + PEFT themselves from a tiny random Gemma 3 model; the kwx
tests only read the files, Python never runs in the Rust test path.

Layout (all tensors f32):
    base/                      tiny random Gemma3ForCausalLM (config.json, model.safetensors)
    lora_all_linear/           PEFT adapter (adapter_config.json, adapter_model.safetensors)
                               + expected.json (input_ids, notes) + expected.safetensors
                               (logits: unmerged PeftModel, merged_logits: merge_and_unload)
    lora_rslora_tokens/        same, rsLoRA on q/v + trainable_token_indices [5, 6, 7]
    lora_modules_to_save/      same, LoRA on o/down + modules_to_save ["embed_tokens"]
    train_5step/               initial_adapter/, batches.json, record.json,
                               grads_step1.safetensors, final_adapter/

Run (transformers 5.x, peft 0.21, torch; CPU is enough, takes a few seconds):
    python scripts/make_peft_fixtures.py [--out DIR]

Choices that keep the check honest:
- every norm weight is random (std 0.3), so a missing (1 + w) or a zero-init norm cannot hide;
- lora_B is random non-zero (PEFT initialises it to zero), so every adapter changes the logits,
  and the script asserts it does;
- 24-token prompts are three times the sliding window (8);
- the trainable-token delta and the modules_to_save copy are perturbed, and the prompts use
  the affected rows;
- the 5-step run has two micro-batches with different label-token counts, right padding, a
  gradient clip that bites, and weight decay, so every piece of the step must match.
"""

import argparse
import copy
import json
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, get_linear_schedule_with_warmup

import peft
from peft import LoraConfig, PeftModel, get_peft_model

VOCAB = 512
PROMPT_LEN = 24
OWNED = ["base", "lora_all_linear", "lora_rslora_tokens", "lora_modules_to_save", "train_5step"]


def base_config():
    return Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        query_pre_attn_scalar=16,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        attn_implementation="eager",
    )


def randomize_base(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif "embed_tokens" in name:
                # Gemma scales the embedding by sqrt(hidden) = 8; std 0.05 keeps the residual stream
                # and the (tied) logits moderate, so the 5-step run's gradient norm straddles 1.0.
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)


def load_base(path):
    model = Gemma3ForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
    assert model.lm_head.weight is model.model.embed_tokens.weight, "base lm_head is not tied"
    return model.eval()


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float().contiguous()


def randomize_lora(model, g, std_a, std_b):
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name:
                p.copy_(torch.randn(p.shape, generator=g) * std_a)
                n += 1
            elif ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * std_b)
                n += 1
    assert n > 0
    return n


def save_adapter(model, folder, base_rel):
    model.save_pretrained(folder, safe_serialization=True)
    # Two cosmetic rewrites of PEFT's adapter_config.json, so reruns are byte-identical:
    # base_model_name_or_path holds this machine's absolute path -> path relative to the adapter;
    # target_modules is a Python set, dumped in hash order -> sorted.
    path = os.path.join(folder, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = base_rel
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    readme = os.path.join(folder, "README.md")  # PEFT's boilerplate model card; not needed
    if os.path.exists(readme):
        os.remove(readme)


def saved_keys(folder):
    t = load_file(os.path.join(folder, "adapter_model.safetensors"))
    for k, v in t.items():
        assert v.dtype == torch.float32, (k, v.dtype)
    return {k: list(v.shape) for k, v in sorted(t.items())}


def make_ids(seed, must_contain=()):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (PROMPT_LEN,), generator=g).tolist()
    for pos, tok in zip((3, 10, 17, 21), must_contain):
        ids[pos] = tok
    return ids


def build_adapter(base_dir, out, name, cfg, ids, seed, extra=None):
    """Makes one adapter with random weights, saves it, writes the unmerged/merged references."""
    folder = os.path.join(out, name)
    os.makedirs(folder)
    base = load_base(base_dir)
    base_logits = logits_of(base, ids)
    model = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(seed)
    randomize_lora(model, g, 0.1, 0.1)
    notes = {}
    if extra is not None:
        notes.update(extra(model, g, ids))
    model.eval()
    logits = logits_of(model, ids)
    save_adapter(model, folder, "../base")

    # Round trip: a fresh base + PeftModel.from_pretrained gives the same unmerged logits.
    reloaded = PeftModel.from_pretrained(load_base(base_dir), folder).eval()
    rl = logits_of(reloaded, ids)
    roundtrip = float((rl - logits).abs().max())
    assert roundtrip == 0.0, f"{name}: reload differs by {roundtrip}"

    # Merged: a fresh copy, merge_and_unload.
    merged_model = PeftModel.from_pretrained(load_base(base_dir), folder).merge_and_unload().eval()
    merged = logits_of(merged_model, ids)
    merge_diff = float((merged - logits).abs().max())
    assert merge_diff < 1e-4, f"{name}: merged differs by {merge_diff}"

    effect = float((logits - base_logits).abs().max())
    assert effect > 0.5, f"{name}: adapter barely changes logits ({effect})"

    save_file({"logits": logits, "merged_logits": merged}, os.path.join(folder, "expected.safetensors"))
    keys = saved_keys(folder)
    notes.update(
        {
            "adapter_effect_max_abs_logit_change": effect,
            "merged_vs_unmerged_max_abs_diff": merge_diff,
            "merged_model_lm_head_tied_to_embed_tokens": merged_model.lm_head.weight
            is merged_model.model.embed_tokens.weight,
        }
    )
    return folder, logits, keys, notes, model


def write_expected(folder, ids, description, keys, notes):
    expected = {
        "input_ids": ids,
        "description": description,
        "adapter_keys": keys,
        "notes": notes,
        "versions": {"torch": torch.__version__, "peft": peft.__version__,
                     "transformers": __import__("transformers").__version__},
    }
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)


# ---------------------------------------------------------------- adapters


def adapter_all_linear(base_dir, out):
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM")
    ids = make_ids(301)
    folder, _, keys, notes, model = build_adapter(base_dir, out, "lora_all_linear", cfg, ids, 401)
    targets = sorted(model.peft_config["default"].target_modules)
    desc = (
        "LoRA r=4 alpha=8 (scale 2.0) on all-linear. PEFT resolved all-linear to "
        f"{targets} (lm_head excluded). lora_A/lora_B random N(0, 0.1). Input has no BOS. "
        "logits = unmerged PeftModel in eval mode; merged_logits = merge_and_unload on a fresh load."
    )
    write_expected(folder, ids, desc, keys, notes)
    return folder, keys


def adapter_rslora_tokens(base_dir, out):
    cfg = LoraConfig(r=8, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "v_proj"],
                     trainable_token_indices=[5, 6, 7], lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM")
    ids = make_ids(302, must_contain=(5, 6, 7, 6))

    def extra(model, g, ids):
        emb = model.get_input_embeddings()  # TrainableTokensWrapper
        ta = emb.token_adapter
        delta = ta.trainable_tokens_delta["default"]
        with torch.no_grad():
            # trainable_tokens_delta holds the full new rows (initialised to the original rows);
            # move them well away from the originals.
            delta.add_(torch.randn(delta.shape, generator=g) * 0.1)
        lm = model.base_model.model.lm_head
        lm_wrapped = type(lm).__name__
        lm_tied = getattr(getattr(lm, "token_adapter", None), "tied_adapter", None) is ta
        return {
            "token_indices": ta.token_indices["default"],
            "lm_head_wrapper": lm_wrapped,
            "lm_head_token_adapter_tied_to_embedding_adapter": bool(lm_tied),
        }

    folder, logits, keys, notes, model = build_adapter(base_dir, out, "lora_rslora_tokens", cfg, ids, 402,
                                                        extra)
    # Does the tied lm_head see the new rows? Compare against the same model with only the
    # embedding side of the trainable tokens active is intrusive; instead check directly that the
    # lm_head output columns 5..7 equal h @ new_rows^T.
    emb = model.get_input_embeddings()
    new_rows = emb.token_adapter.trainable_tokens_delta["default"].detach()
    with torch.no_grad():
        out_h = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        h = out_h.hidden_states[-1][0]  # after final norm
        cols = h @ new_rows.T
    lm_uses_new = float((cols - logits[:, [5, 6, 7]]).abs().max())
    notes["lm_head_uses_new_token_rows_max_abs_diff"] = lm_uses_new
    assert lm_uses_new < 1e-4, lm_uses_new
    desc = (
        "LoRA r=8 alpha=16 use_rslora=True (scale alpha/sqrt(r) = 16/sqrt(8) = 5.656854) on q_proj and "
        "v_proj, plus trainable_token_indices=[5,6,7] on embed_tokens. trainable_tokens_delta [3, 64] "
        "holds the full replacement rows for tokens 5,6,7 (not a delta added to the originals), perturbed "
        "by N(0, 0.1) from the original rows (std 0.05). PEFT ties lm_head to the embedding adapter (tie_word_embeddings), "
        "so the replacement rows are used both for the embedding lookup (then scaled by sqrt(hidden)) "
        "and as lm_head output rows 5,6,7; only the embed_tokens key is saved. Input ids contain 5 at "
        "position 3, 6 at 10 and 21, 7 at 17."
    )
    write_expected(folder, ids, desc, keys, notes)
    return folder, keys


def adapter_modules_to_save(base_dir, out):
    cfg = LoraConfig(r=4, lora_alpha=4, target_modules=["o_proj", "down_proj"],
                     modules_to_save=["embed_tokens"], lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM")
    ids = make_ids(303)

    def extra(model, g, ids):
        emb = model.get_input_embeddings()  # ModulesToSaveWrapper
        copy_w = emb.modules_to_save["default"].weight
        with torch.no_grad():
            copy_w.add_(torch.randn(copy_w.shape, generator=g) * 0.05)
        return {}

    folder, logits, keys, notes, model = build_adapter(base_dir, out, "lora_modules_to_save", cfg, ids, 403,
                                                        extra)
    # Which matrix does lm_head use in PEFT's forward?
    emb = model.get_input_embeddings()
    w_copy = emb.modules_to_save["default"].weight.detach()
    w_orig = emb.original_module.weight.detach()
    lm_w = model.base_model.model.lm_head.weight
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
    d_orig = float((h @ w_orig.T - logits).abs().max())
    d_copy = float((h @ w_copy.T - logits).abs().max())
    lm_tied_to_copy = d_copy < 1e-4 and d_orig > 1e-2
    lm_uses_orig = d_orig < 1e-4 and d_copy > 1e-2
    assert lm_tied_to_copy or lm_uses_orig, (d_orig, d_copy)
    notes.update(
        {
            "lm_head_weight_is_original_embed_weight": lm_w is w_orig or lm_w.data_ptr() == w_orig.data_ptr(),
            "lm_head_weight_is_modules_to_save_copy": lm_w.data_ptr() == w_copy.data_ptr(),
            "logits_vs_h_at_original_embed_max_abs_diff": d_orig,
            "logits_vs_h_at_modified_embed_max_abs_diff": d_copy,
            "lm_head_tied_to_modified_embedding_in_peft_forward": lm_tied_to_copy,
        }
    )
    which = "the MODIFIED (saved) copy" if lm_tied_to_copy else "the ORIGINAL base embedding"
    desc = (
        "LoRA r=4 alpha=4 (scale 1.0) on o_proj and down_proj, plus modules_to_save=['embed_tokens'] "
        "(ensure_weight_tying not set). The saved copy of embed_tokens is the base embedding (std 0.05) + N(0, 0.05). "
        f"PEFT saved keys: {sorted(keys)}. In PEFT's forward the input embedding lookup uses the modified "
        f"copy (times sqrt(hidden) as Gemma's scaled embedding), and lm_head uses {which} "
        f"(measured: |h W_orig^T - logits| = {d_orig:.3g}, |h W_copy^T - logits| = {d_copy:.3g}), i.e. the "
        f"tie is {'kept' if lm_tied_to_copy else 'broken'}. merge_and_unload reproduces this "
        f"(merged lm_head tied to embed_tokens: {notes['merged_model_lm_head_tied_to_embed_tokens']})."
    )
    write_expected(folder, ids, desc, keys, notes)
    return folder, keys


# ---------------------------------------------------------------- 5-step training

TRAIN = {
    "r": 4,
    "lora_alpha": 8,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "lora_dropout": 0.0,
    "init": {"lora_A_std": 0.1, "lora_B_std": 0.05, "seed": 501},
    "steps": 5,
    "micro_batches_per_step": 2,
    "peak_lr": 1e-2,
    "schedule": "transformers.get_linear_schedule_with_warmup(num_warmup_steps=2, num_training_steps=5); "
    "lr(step k, 0-based) = peak*k/2 for k<2, peak*(5-k)/3 otherwise -> the first step uses lr 0",
    "optimizer": "torch.optim.AdamW(betas=(0.9,0.999), eps=1e-8, weight_decay=0.1, amsgrad=False, "
    "foreach=False): p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; "
    "p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)",
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    "weight_decay": 0.1,
    "max_grad_norm": 1.0,
    "clip": "torch.nn.utils.clip_grad_norm_(lora params, 1.0): global L2 norm over all lora_A/lora_B grads; "
    "if norm > 1: g *= 1/(norm + 1e-6)",
    "loss": "per step: sum over both micro-batches of token CE (logits[:, t] vs labels[:, t+1], labels != -100) "
    "/ total label tokens of both micro-batches; each micro-batch backward()s its own sum / total",
    "attention_mask": "1 for real tokens, 0 for right padding (pad id 0); position ids 0..15 for every row",
    "dtype": "float32",
}


def make_batches():
    """Two micro-batches [2, 16], right-padded; prompt and padding labelled -100.

    (length, prompt_len) per row: micro-batch 0 -> 5 + 4 = 9 label tokens,
    micro-batch 1 -> 10 + 7 = 17 label tokens.
    """
    g = torch.Generator().manual_seed(601)
    layout = [[(10, 5), (8, 4)], [(16, 6), (13, 6)]]
    mbs = []
    for rows in layout:
        ids_b, lab_b = [], []
        for length, prompt in rows:
            ids = [2] + torch.randint(3, VOCAB, (length - 1,), generator=g).tolist() + [0] * (16 - length)
            labels = [-100] * prompt + ids[prompt:length] + [-100] * (16 - length)
            ids_b.append(ids)
            lab_b.append(labels)
        mbs.append({"input_ids": ids_b, "labels": lab_b})
    return mbs


def peft_key(param_name):
    # base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> PEFT's saved name
    return param_name.replace(".default.", ".")


def train_5step(base_dir, out):
    folder = os.path.join(out, "train_5step")
    os.makedirs(folder)
    model = get_peft_model(
        load_base(base_dir),
        LoraConfig(r=TRAIN["r"], lora_alpha=TRAIN["lora_alpha"], target_modules=TRAIN["target_modules"],
                   lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"),
    )
    g = torch.Generator().manual_seed(TRAIN["init"]["seed"])
    randomize_lora(model, g, TRAIN["init"]["lora_A_std"], TRAIN["init"]["lora_B_std"])
    save_adapter(model, os.path.join(folder, "initial_adapter"), "../../base")

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_A." in n or ".lora_B." in n for n, _ in trainable)
    params = [p for _, p in trainable]
    opt = torch.optim.AdamW(params, lr=TRAIN["peak_lr"], betas=tuple(TRAIN["betas"]), eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"], foreach=False)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=TRAIN["steps"])

    mbs = make_batches()
    tensors = []
    for mb in mbs:
        ids = torch.tensor(mb["input_ids"])
        labels = torch.tensor(mb["labels"])
        mask = (ids != 0).long()
        tensors.append((ids, labels, mask))
    counts = [int((lab[:, 1:] != -100).sum()) for _, lab, _ in tensors]
    assert counts == [int((torch.tensor(m["labels"]) != -100).sum()) for m in mbs]
    total = sum(counts)

    model.train()
    losses, norms, lrs, mb_losses, clipped = [], [], [], [], []
    for step in range(TRAIN["steps"]):
        lr = opt.param_groups[0]["lr"]
        step_loss = 0.0
        per_mb = []
        for ids, labels, mask in tensors:
            logits = model(input_ids=ids, attention_mask=mask).logits
            ce = F.cross_entropy(
                logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100,
                reduction="sum",
            )
            loss = ce / total
            loss.backward()
            step_loss += float(loss.detach())
            per_mb.append(float(ce.detach()))
        if step == 0:
            grads = {peft_key(n): p.grad.detach().clone().contiguous() for n, p in trainable}
            save_file(grads, os.path.join(folder, "grads_step1.safetensors"))
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm=TRAIN["max_grad_norm"]))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        norms.append(norm)
        lrs.append(lr)
        mb_losses.append(per_mb)
        clipped.append(norm > TRAIN["max_grad_norm"])

    model.eval()
    with torch.no_grad():
        after = 0.0
        for ids, labels, mask in tensors:
            logits = model(input_ids=ids, attention_mask=mask).logits
            after += float(F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1),
                                           ignore_index=-100, reduction="sum")) / total
    save_adapter(model, os.path.join(folder, "final_adapter"), "../../base")

    # Gradient key names must be exactly the adapter's key names.
    init_keys = saved_keys(os.path.join(folder, "initial_adapter"))
    assert set(init_keys) == set(grads), set(init_keys) ^ set(grads)
    assert all(list(grads[k].shape) == init_keys[k] for k in grads)
    assert any(clipped), f"clipping never bites: {norms}"

    with open(os.path.join(folder, "batches.json"), "w") as f:
        json.dump({"micro_batches": mbs}, f, indent=1)
    config = dict(TRAIN)
    config.update(
        {
            "label_tokens_per_micro_batch": counts,
            "label_tokens_per_step": total,
            "pad_id": 0,
            "seq_len": 16,
            "micro_batch_size": 2,
            "same_micro_batches_every_step": True,
            "clipped_steps_1based": [i + 1 for i, c in enumerate(clipped) if c],
            "grads_step1": "accumulated over both micro-batches, before clipping, PEFT key names "
            "(lora_A [r, in], lora_B [out, r])",
            "lora_scale": TRAIN["lora_alpha"] / TRAIN["r"],
        }
    )
    record = {
        "losses": losses,
        "grad_norms": norms,
        "lrs": lrs,
        "micro_batch_ce_sums": mb_losses,
        "clipped": clipped,
        "loss_after_5_steps": after,
        "config": config,
        "versions": {"torch": torch.__version__, "peft": peft.__version__,
                     "transformers": __import__("transformers").__version__},
    }
    with open(os.path.join(folder, "record.json"), "w") as f:
        json.dump(record, f, indent=2)
    return record


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "..", "crates", "kwx-peft", "tests", "fixtures", "peft"),
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = os.path.abspath(args.out)
    # Only the folders this script makes are replaced; others beside them (e.g. kwx_saved/,
    # written by the Rust side and checked with check_peft_load.py) are left alone.
    for sub in OWNED:
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)

    base_dir = os.path.join(out, "base")
    model = Gemma3ForCausalLM(base_config()).eval()
    randomize_base(model, seed=101)
    model.save_pretrained(base_dir, safe_serialization=True)
    # The reloaded base must give the in-memory logits (tie kept, f32 storage).
    ids = make_ids(300)
    d = float((logits_of(model, ids) - logits_of(load_base(base_dir), ids)).abs().max())
    assert d == 0.0, d

    summary = {}
    for fn in (adapter_all_linear, adapter_rslora_tokens, adapter_modules_to_save):
        folder, keys = fn(base_dir, out)
        summary[os.path.basename(folder)] = keys
    record = train_5step(base_dir, out)
    print(json.dumps({"adapter_keys": summary}, indent=1))
    print(json.dumps({k: record[k] for k in ("losses", "grad_norms", "lrs", "clipped", "loss_after_5_steps")}))


if __name__ == "__main__":
    main()
