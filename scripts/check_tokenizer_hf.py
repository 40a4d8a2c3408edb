#!/usr/bin/env python3
"""Reference token ids from the Python `tokenizers` library (Hugging Face) for a tokenizer.json,
so that kwx's own encoding of the same file can be checked against them without Python in the
Rust test path.

Loads TOKENIZER_JSON with `tokenizers.Tokenizer.from_file`, encodes every line of LINES_TXT with
`encode(line, add_special_tokens=False)` and decodes the ids back with
`decode(ids, skip_special_tokens=False)`.

LINES_TXT is read as strict UTF-8 and split on "\\n" only: "\\r", tabs and every other control
character stay inside their line, and a final "\\n" ends the last line rather than starting an
empty one (so "a\\n\\nb\\n" is the three lines "a", "", "b"). A byte-order mark is not stripped.

    python scripts/check_tokenizer_hf.py TOKENIZER_JSON LINES_TXT IDS_JSON --write
        writes IDS_JSON:
        {"tokenizers_version": "0.23.3", "tokenizer_sha256": <sha256 of TOKENIZER_JSON's bytes>,
         "lines": N, "ids": [[...], ...] (one list per line, in order),
         "decoded_equal": <number of lines whose decoded ids equal the line exactly>}
    python scripts/check_tokenizer_hf.py TOKENIZER_JSON LINES_TXT IDS_JSON
        encodes again and compares with IDS_JSON; on a difference prints the first differing line
        (1-based number, the line, expected and actual ids) and exits 1. A different tokenizers
        version or tokenizer sha256 is reported as a note; only the line count, the ids and
        decoded_equal decide.

Prints a one-line summary either way. No downloads: TOKENIZER_JSON is a local file.
"""

import argparse
import hashlib
import json
import sys

import tokenizers
from tokenizers import Tokenizer


def read_lines(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final "\n" ends the last line
    return lines


def encode_all(tokenizer, lines):
    encs = tokenizer.encode_batch(lines, add_special_tokens=False)
    ids = [e.ids for e in encs]
    decoded = tokenizer.decode_batch(ids, skip_special_tokens=False)
    decoded_equal = sum(1 for d, line in zip(decoded, lines) if d == line)
    return ids, decoded_equal


def dump(path, obj):
    # One id list per line: diffs of the file stay readable.
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("{\n")
        for key in ("tokenizers_version", "tokenizer_sha256", "lines", "decoded_equal"):
            f.write(f"  {json.dumps(key)}: {json.dumps(obj[key])},\n")
        f.write('  "ids": [\n')
        rows = [json.dumps(row, separators=(",", ":")) for row in obj["ids"]]
        f.write(",\n".join("    " + r for r in rows))
        f.write("\n  ]\n}\n" if rows else "  ]\n}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizer_json")
    ap.add_argument("lines_txt")
    ap.add_argument("ids_json")
    ap.add_argument("--write", action="store_true", help="write IDS_JSON instead of comparing with it")
    args = ap.parse_args()

    with open(args.tokenizer_json, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    tokenizer = Tokenizer.from_file(args.tokenizer_json)
    lines = read_lines(args.lines_txt)
    ids, decoded_equal = encode_all(tokenizer, lines)
    n_ids = sum(len(r) for r in ids)
    version = tokenizers.__version__

    if args.write:
        dump(args.ids_json, {
            "tokenizers_version": version, "tokenizer_sha256": sha, "lines": len(lines),
            "ids": ids, "decoded_equal": decoded_equal,
        })
        print(f"check_tokenizer_hf: wrote {args.ids_json}: {len(lines)} lines, {n_ids} ids, "
              f"decoded_equal {decoded_equal}/{len(lines)} (tokenizers {version})")
        return 0

    with open(args.ids_json, encoding="utf-8") as f:
        ref = json.load(f)
    if ref.get("tokenizers_version") != version:
        print(f"note: IDS_JSON was written with tokenizers {ref.get('tokenizers_version')}, this is {version}")
    if ref.get("tokenizer_sha256") != sha:
        print(f"note: tokenizer sha256 {sha} differs from the one IDS_JSON was written for "
              f"({ref.get('tokenizer_sha256')})")
    failed = False
    if ref["lines"] != len(lines) or len(ref["ids"]) != len(lines):
        print(f"FAIL: IDS_JSON has {ref['lines']} lines ({len(ref['ids'])} id lists), LINES_TXT has {len(lines)}")
        failed = True
    for i, (exp, act) in enumerate(zip(ref["ids"], ids)):
        if exp != act:
            print(f"FAIL: line {i + 1} differs")
            print(f"  line:     {lines[i]!r}")
            print(f"  expected: {exp}")
            print(f"  actual:   {act}")
            failed = True
            break
    if ref.get("decoded_equal") != decoded_equal:
        print(f"FAIL: decoded_equal {decoded_equal}, IDS_JSON says {ref.get('decoded_equal')}")
        failed = True
    status = "FAIL" if failed else "OK"
    print(f"check_tokenizer_hf: {status}: {len(lines)} lines, {n_ids} ids, "
          f"decoded_equal {decoded_equal}/{len(lines)} (tokenizers {version}) against {args.ids_json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
