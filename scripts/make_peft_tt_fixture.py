#!/usr/bin/env python3
"""Builds crates/kwx-peft/tests/fixtures/peft/trainable_tokens: a PEFT TrainableTokensConfig
adapter (only embedding rows trained, the tie with lm_head kept) on the committed tiny base model.

    python scripts/make_peft_tt_fixture.py

Made by PEFT itself: get_peft_model(base, TrainableTokensConfig(token_indices=[5, 6, 7, 500,
501])), the rows moved away from the originals by N(0, 0.1), save_pretrained; expected.json holds
the input ids (every trained id occurs), expected.safetensors the logits of the PeftModel in eval
mode and of merge_and_unload on a fresh load. Uses the helpers of make_peft_fixtures.py (same
base, same conventions); run that script first if base/ is missing.
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_peft_fixtures as mk  # noqa: E402
from peft import PeftModel, TrainableTokensConfig, get_peft_model  # noqa: E402

TOKENS = [5, 6, 7, 500, 501]


def main():
    torch.set_num_threads(1)
    out = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "crates", "kwx-peft", "tests",
                                       "fixtures", "peft"))
    base_dir = os.path.join(out, "base")
    folder = os.path.join(out, "trainable_tokens")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)

    ids = mk.make_ids(304, must_contain=(5, 6, 7, 500))
    ids[22] = 501
    base = mk.load_base(base_dir)
    base_logits = mk.logits_of(base, ids)
    model = get_peft_model(base, TrainableTokensConfig(token_indices=TOKENS))
    g = torch.Generator().manual_seed(405)
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "trainable_tokens_delta" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
                n += 1
    assert n == 1, n
    model.eval()
    logits = mk.logits_of(model, ids)
    mk.save_adapter(model, folder, "../base")

    reloaded = PeftModel.from_pretrained(mk.load_base(base_dir), folder).eval()
    roundtrip = float((mk.logits_of(reloaded, ids) - logits).abs().max())
    assert roundtrip == 0.0, roundtrip
    merged_model = PeftModel.from_pretrained(mk.load_base(base_dir), folder).merge_and_unload().eval()
    merged = mk.logits_of(merged_model, ids)
    merge_diff = float((merged - logits).abs().max())
    assert merge_diff < 1e-4, merge_diff
    effect = float((logits - base_logits).abs().max())
    assert effect > 0.5, effect
    save_file({"logits": logits, "merged_logits": merged}, os.path.join(folder, "expected.safetensors"))
    keys = mk.saved_keys(folder)
    desc = (
        f"TrainableTokensConfig(token_indices={TOKENS}) on the tiny base (tied lm_head). "
        "trainable_tokens_delta holds the full replacement rows, moved by N(0, 0.1) from the originals; "
        "PEFT saves them under embed_tokens and again under lm_head (the tie). Every trained id occurs "
        "in the input. logits = PeftModel in eval mode; merged_logits = merge_and_unload on a fresh load."
    )
    mk.write_expected(folder, ids, desc, keys,
                      {"adapter_effect_max_abs_logit_change": effect,
                       "merged_vs_unmerged_max_abs_diff": merge_diff})
    print(json.dumps({"keys": keys, "effect": effect, "merge_diff": merge_diff}))


if __name__ == "__main__":
    main()
