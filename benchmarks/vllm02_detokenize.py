"""Host cost of vLLM 0.2.3's incremental detokenization with the transformers release it pins (4.34.0).

Each step ``LLMEngine._decode_sequence`` (vllm/engine/llm_engine.py v0.2.3) calls
``detokenize_incrementally(tokenizer, all_input_ids=seq.get_token_ids(), prev_tokens=seq.tokens, ...,
skip_special_tokens=prms.skip_special_tokens)`` for every running sequence (vllm/transformers_utils/tokenizer.py
v0.2.3). ``SamplingParams.skip_special_tokens`` defaults to True (vllm/sampling_params.py L110), and DistServe's
client does not set it. On a sequence's first call (its prompt step) ``prev_tokens`` is None, so the whole prompt
goes through ``tokenizer.convert_ids_to_tokens(all_input_ids, skip_special_tokens=True)``; later calls convert one
id. In transformers 4.34.0 (the DistServe fork's requirements.txt pin) ``PreTrainedTokenizerFast
.convert_ids_to_tokens`` (tokenization_utils_fast.py L355-360) tests ``index in self.all_special_ids`` for every id,
and ``all_special_ids`` is a property that rebuilds the special-token list and converts it to ids on every access
(tokenization_utils_base.py L1335-1388). vLLM cached these properties only from v0.4.0 (get_cached_tokenizer,
vllm-project/vllm#2879, 2024-03-15: "transformers will recompute multiple tokenizer properties each time they are
called, leading to a significant slowdown").

This times vLLM 0.2.3's own ``detokenize_incrementally`` on a GPT2TokenizerFast with OPT's special tokens
(facebook/opt-13b special_tokens_map.json: bos, eos and unk "</s>", pad "<pad>", as AddedTokens) over a synthetic
byte-level BPE vocabulary of OPT's size (50,265 ids; what is timed -- the special-token property and one
id_to_token per id -- does not depend on the merges), for a prompt step of N tokens and for a decode step at a
1,000-token context.

    python -m venv /tmp/tok && /tmp/tok/bin/pip install "transformers==4.34.0" "tokenizers>=0.14,<0.15"
    pip download vllm==0.2.3 --no-deps -d /tmp/vllm023 && cd /tmp/vllm023 && unzip -q vllm-0.2.3-*.whl 'vllm/*'
    /tmp/tok/bin/python benchmarks/vllm02_detokenize.py --vllm-dir /tmp/vllm023

Prints ``name: value`` lines (minimum and median over repeats, microseconds).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

OPT_VOCAB = 50265  # facebook/opt-13b vocab.json entries (its embedding is padded to 50,272)


def _tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2TokenizerFast
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    base = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"])}  # OPT's first four ids
    for ch in base:
        vocab.setdefault(ch, len(vocab))
    rng, merges, pool = random.Random(0), [], list(base)
    while len(vocab) < OPT_VOCAB:
        a, b = rng.choice(pool), rng.choice(pool)
        if len(a) + len(b) > 8 or a + b in vocab:
            continue
        vocab[a + b] = len(vocab)
        merges.append((a, b))
        pool.append(a + b)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = {k: AddedToken(v, lstrip=False, rstrip=False, single_word=False, normalized=True)
               for k, v in (("bos_token", "</s>"), ("eos_token", "</s>"), ("unk_token", "</s>"),
                            ("pad_token", "<pad>"))}
    return GPT2TokenizerFast(tokenizer_object=tok, **special)


def _detokenizer(root: str):
    """vLLM 0.2.3's detokenize_incrementally, imported without the package __init__ (which needs CUDA)."""
    pkg = type(sys)("vllm")
    pkg.__path__ = [f"{root}/vllm"]  # type: ignore[attr-defined]
    sys.modules["vllm"] = pkg
    sys.modules.setdefault("sentencepiece", type(sys)("sentencepiece"))  # only the Baichuan tokenizer uses it
    from vllm.transformers_utils.tokenizer import detokenize_incrementally
    return detokenize_incrementally


def _times_us(fn, repeats: int) -> tuple[float, float]:
    """(minimum, median) over repeats: on a shared host the minimum is the run least disturbed by other work."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e6, statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vllm-dir", required=True)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    tok, detok = _tokenizer(), _detokenizer(args.vllm_dir)
    rng = random.Random(1)
    print(f"all_special_ids: {tok.all_special_ids}")
    lo, med = _times_us(lambda: tok.all_special_ids, 20 * args.repeats)
    print(f"all_special_ids_access_us: min {lo:.2f} median {med:.2f}")
    for n in (256, 850, 2000):
        ids = [rng.randrange(4, OPT_VOCAB) for _ in range(n)]
        lo, med = _times_us(lambda ids=ids: detok(tok, ids, None, skip_special_tokens=True), args.repeats)
        off, _ = _times_us(lambda ids=ids: detok(tok, ids, None, skip_special_tokens=False), args.repeats)
        print(f"prompt_step_{n}_tokens_us: min {lo:.0f} median {med:.0f} (per token: min {lo / n:.2f} median "
              f"{med / n:.2f}; with skip_special_tokens=False min {off / n:.2f})")
    ids = [rng.randrange(4, OPT_VOCAB) for _ in range(1000)]
    prev = tok.convert_ids_to_tokens(ids[:-1])

    def step() -> None:
        all_ids = ids[:900] + ids[900:]  # Sequence.get_token_ids: prompt + output ids, a new list each step
        detok(tok, all_ids, prev, prefix_offset=len(prev) - 5, read_offset=len(prev), skip_special_tokens=True)

    lo, med = _times_us(step, 100 * args.repeats)
    print(f"decode_step_per_sequence_us: min {lo:.1f} median {med:.1f}")


if __name__ == "__main__":
    main()
