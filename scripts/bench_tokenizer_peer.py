#!/usr/bin/env python3
"""Tokenizer training time and memory with the Python peers (SentencePiece and Hugging Face
`tokenizers`): the peer of kwx's tokenizer-training benchmark (examples/bench_tokenizer.rs,
crates/kwx-tokenizer). Run both side by side with scripts/bench_tokenizer_compare.sh.

Every (peer, model) run happens in a fresh child process (this script re-invoked with a hidden
--one flag, thread variables set in its environment before anything is imported), and prints one
JSON line:
    {"peer": "sentencepiece" | "hf-tokenizers", "model": "bpe" | "unigram", "vocab_size",
     "corpus_bytes", "wall_s", "peak_rss_mib", "threads"}
wall_s times the training call alone (reading the corpus file included, imports not);
peak_rss_mib is the child's peak resident set (getrusage(RUSAGE_SELF).ru_maxrss after training),
so it includes the Python interpreter and the imported library. The trained models are saved in
--out-dir (not timed): sentencepiece-{bpe,unigram}.model/.vocab, hf-tokenizers-{bpe,unigram}.json.

Settings, a SentencePiece-style pipeline (no normalization, no dummy prefix, pieces split at
whitespace that is kept as "▁", byte fallback, ids 0-3 <pad> <eos> <bos> <unk>, then the 256
byte pieces <0x00>..<0xFF>, then the learned pieces; vocab_size counts all of them):
  sentencepiece  SentencePieceTrainer.train(input=CORPUS, model_prefix=OUT/sentencepiece-MODEL,
                 model_type=MODEL, vocab_size=V, character_coverage=0.9995, byte_fallback=True,
                 normalization_rule_name="identity", remove_extra_whitespaces=False,
                 add_dummy_prefix=False, split_by_whitespace=True, split_by_unicode_script=False,
                 split_by_number=False (SentencePiece splits at script and digit boundaries by
                 default; Metaspace cannot, so both split at whitespace only), num_threads=N,
                 input_sentence_size=0 (every line), max_sentence_length=1<<20 (bytes; longer
                 lines would be skipped; the default, 4192, skips long paragraphs), pad_id=0
                 eos_id=1 bos_id=2 unk_id=3 with pieces <pad> <eos> <bos> <unk>, minloglevel=1
                 unless --verbose); other settings at their defaults (max_sentencepiece_length
                 16, seed_sentencepiece_size 1e6, shrinking_factor 0.75, num_sub_iterations 2).
  hf-tokenizers  Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>")) or
                 Tokenizer(models.Unigram()), no normalizer,
                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
                 trainers.BpeTrainer(vocab_size=V, special_tokens=S, show_progress=False) or
                 trainers.UnigramTrainer(vocab_size=V, special_tokens=S, unk_token="<unk>",
                 show_progress=False), with S = ["<pad>", "<eos>", "<bos>", "<unk>"] +
                 ["<0x%02X>" % b for b in range(256)]; tokenizer.train([CORPUS], trainer);
                 RAYON_NUM_THREADS=N and TOKENIZERS_PARALLELISM=true in the child environment.
                 The saved files add a decoder (Replace "▁" -> " ", ByteFallback, Fuse), and
                 the Unigram one gets byte_fallback=true, which UnigramTrainer leaves off.
                 Differences the libraries leave: the HF trainers have no character_coverage
                 (every character seen is kept), HF BPE has no maximum piece length
                 (max_token_length=None; SentencePiece and HF Unigram stop at 16). A vocab_size
                 below the alphabet (characters within coverage, plus specials) fails in
                 SentencePiece and HF Unigram; HF BPE then returns a vocabulary over vocab_size.

    python scripts/bench_tokenizer_peer.py --corpus /tmp/kwx-corpus-20mb.txt --vocab-size 16000 \\
        --models bpe,unigram --peers sentencepiece,hf --threads 2 --out-dir /tmp/kwx-tokenizer-peer
Exits 1 if any run failed (the other runs still print their lines). No downloads.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

PEERS = {"sentencepiece": "sentencepiece", "hf": "hf-tokenizers"}
MODELS = ("bpe", "unigram")
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def train_sentencepiece(args, model):
    import sentencepiece as spm

    prefix = os.path.join(args.out_dir, f"sentencepiece-{model}")
    kwargs = dict(
        input=args.corpus, model_prefix=prefix, model_type=model, vocab_size=args.vocab_size,
        character_coverage=0.9995, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False, split_by_whitespace=True,
        split_by_unicode_script=False, split_by_number=False,
        num_threads=args.threads, input_sentence_size=0, max_sentence_length=1 << 20,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        minloglevel=0 if args.verbose else 1,
    )
    t0 = time.perf_counter()
    spm.SentencePieceTrainer.train(**kwargs)
    return time.perf_counter() - t0


def train_hf(args, model):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = SPECIALS + ["<0x%02X>" % b for b in range(256)]
    if model == "bpe":
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=specials, show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=args.vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    t0 = time.perf_counter()
    tok.train([args.corpus], trainer)
    wall = time.perf_counter() - t0
    saved = json.loads(tok.to_str())
    # UnigramTrainer builds its model with byte_fallback off whatever the initial model said;
    # turn it on in the saved file so that it falls back to bytes like the other models.
    saved["model"]["byte_fallback"] = True
    with open(os.path.join(args.out_dir, f"hf-tokenizers-{model}.json"), "w", encoding="utf-8") as f:
        json.dump(saved, f, ensure_ascii=False, indent=2)
    return wall


def one(args):
    """Child: one training run, one JSON line on stdout."""
    peer, model = args.one.split(":")
    wall = (train_sentencepiece if peer == "sentencepiece" else train_hf)(args, model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({
        "peer": PEERS[peer], "model": model, "vocab_size": args.vocab_size,
        "corpus_bytes": os.path.getsize(args.corpus), "wall_s": round(wall, 3),
        "peak_rss_mib": round(peak, 1), "threads": args.threads,
    }), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="UTF-8 text, one sentence per line")
    ap.add_argument("--vocab-size", type=int, default=16000)
    ap.add_argument("--models", default="bpe,unigram", help="comma-separated: bpe, unigram")
    ap.add_argument("--peers", default="sentencepiece,hf", help="comma-separated: sentencepiece, hf")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default=os.path.join(tempfile.gettempdir(), "kwx-tokenizer-peer"),
                    help="where the trained models are saved (default: %(default)s)")
    ap.add_argument("--verbose", action="store_true", help="keep SentencePiece's info log (stderr)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: PEER:MODEL
    args = ap.parse_args()

    if args.one:
        one(args)
        return 0

    models = [m for m in args.models.split(",") if m]
    peers = [p for p in args.peers.split(",") if p]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r} (bpe, unigram)")
    for p in peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r} (sentencepiece, hf)")
    if not os.path.isfile(args.corpus):
        ap.error(f"no corpus file {args.corpus}")
    os.makedirs(args.out_dir, exist_ok=True)

    env = dict(os.environ)
    env.update({
        "RAYON_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "true",
        "OMP_NUM_THREADS": str(args.threads),
    })
    failed = 0
    for model in models:
        for peer in peers:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", f"{peer}:{model}",
                   "--corpus", args.corpus, "--vocab-size", str(args.vocab_size),
                   "--threads", str(args.threads), "--out-dir", args.out_dir]
            if args.verbose:
                cmd.append("--verbose")
            res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
            if res.returncode != 0 or not lines:
                print(f"bench_tokenizer_peer: {PEERS[peer]} {model} failed (exit {res.returncode})", file=sys.stderr)
                failed += 1
                continue
            print(lines[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
