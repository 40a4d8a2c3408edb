#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) as kwx's GGUF peer. Two jobs:

  bench   load time, prefill and decode tokens/s on a GGUF, with the same prompt ids as
          `examples/bench_gguf.rs` (the `prompt_ids` of its JSON) -> one JSON line.
  greedy  load a GGUF (e.g. one kwx exported), take the argmax at every prompt position and the
          top-10 logits at the last, and greedy-decode N tokens after the ids -> one JSON line
          {"argmax_per_position", "top10_ids", "top10_logits", "tokens"}.

    python scripts/llama_cpp_peer.py bench  --model M.gguf --threads 2 --ids 2,17,... --new-tokens 64
    python scripts/llama_cpp_peer.py greedy --model M.gguf --ids 2,17,250 --new-tokens 8

Install (no wheel on PyPI; builds from source in ~9 min on 2 cores; the default native build
crashes on quantized models on this CPU, see shared/reference/PEERS.md):
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
      -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX2=ON -DGGML_FMA=ON \
      -DGGML_F16C=ON" pip wheel --no-cache-dir --no-deps --no-binary llama-cpp-python \
      -w ~/.cache/kwx/wheels llama-cpp-python==0.3.36
    pip install ~/.cache/kwx/wheels/llama_cpp_python-0.3.36-*.whl
"""

import argparse
import json
import resource
import sys
import time


def load(path, threads, n_ctx, logits_all=False):
    from llama_cpp import Llama

    t = time.perf_counter()
    llm = Llama(
        model_path=path,
        n_ctx=n_ctx,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=logits_all,
        verbose=False,
        seed=0,
    )
    return llm, time.perf_counter() - t


def prompt_logits(llm, ids):
    """Logits at every prompt position (needs the model loaded with logits_all=True)."""
    import numpy as np

    import llama_cpp

    llm.reset()
    llm.eval(ids)
    return [
        np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, i), shape=(llm.n_vocab(),)).copy()
        for i in range(len(ids))
    ]


def greedy(llm, ids, n):
    """Argmax decoding through llama.cpp's KV cache; no EOS stop (kwx's test does the same)."""
    import numpy as np

    import llama_cpp

    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        # The last evaluated position's logits, straight from llama.cpp (llm.scores is only
        # filled with logits_all=True in 0.3.36).
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))
        tok = int(np.argmax(logits))
        out.append(tok)
        llm.eval([tok])
    return out


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("job", choices=["bench", "greedy"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated prompt ids")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    ids = [int(x) for x in args.ids.split(",") if x]
    llm, load_s = load(args.model, args.threads, n_ctx=max(256, len(ids) + args.new_tokens + 8),
                       logits_all=args.job == "greedy")

    if args.job == "greedy":
        import numpy as np

        per_pos = prompt_logits(llm, ids)
        last = per_pos[-1]
        top = [int(i) for i in np.argsort(-last)[:10]]
        print(json.dumps({
            "engine": "llama.cpp",
            "argmax_per_position": [int(np.argmax(l)) for l in per_pos],
            "top10_ids": top,
            "top10_logits": [float(last[i]) for i in top],
            "tokens": greedy(llm, ids, args.new_tokens),
        }))
        return

    prefill, decode = [], []
    for _ in range(max(1, args.reps)):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        prefill.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(args.new_tokens):
            # Sampling is not what is measured: feed the same token; the work per step is the same.
            llm.eval([ids[-1]])
        decode.append((time.perf_counter() - t) / args.new_tokens)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "engine": "llama.cpp",
                "version": __import__("llama_cpp").__version__,
                "threads": args.threads,
                "load_s": load_s,
                "peak_rss_mib": rss,
                "prompt_tokens": len(ids),
                "new_tokens": args.new_tokens,
                "prefill_tok_s": len(ids) / median(prefill),
                "decode_tok_s": 1.0 / median(decode),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
