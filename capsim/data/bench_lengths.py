"""Token counts a GenAI-Perf export determines without a tokenizer, and the ones a user states.

GenAI-Perf itself counts tokens by tokenizing text: the prompt text of each payload and the joined output text
(perf_analyzer 263c5f6e, ``genai-perf/genai_perf/profile_data_parser/llm_profile_data_parser.py`` L401-416 and
L435-459: ``len(self._tokenizer.encode(text))``; only ``triton_c_api`` runs count ``input_ids``/``output_ids``). capsim
has no tokenizer, so it takes only what the file fixes exactly:
- the server's ``usage`` (``capsim/data/bench_nvidia.py``);
- output: the payload's ``max_tokens`` (or ``max_completion_tokens``) when the response ends with ``finish_reason``
  ``"length"`` (the OpenAI API's reason for stopping at that cap), or when the payload asks ``ignore_eos: true`` or
  ``min_tokens`` >= ``max_tokens`` and names no ``stop`` strings (vLLM ``SamplingParams``: ``ignore_eos`` "continue
  generating tokens after the EOS token", ``min_tokens`` "before EOS or stop_token_ids can be generated"), so that
  only the cap ends the request (the NIM benchmarking recipe's ``--extra-inputs max_tokens:N min_tokens:N
  ignore_eos:true`` is such a run);
- prompt: a completions payload whose ``prompt`` is token ids (a list of integers);
- a length the user states for every request (``--input-len`` / ``--output-len``, e.g. GenAI-Perf's
  ``--synthetic-input-tokens-mean`` with stddev 0), used only where the file fixes none, and said.
The number of streamed chunks is not a token count: vLLM's OpenAI server sends no chunk for a token whose text delta
is empty (``serving_chat.py`` ``chat_completion_stream_generator``: "if delta_message is None ... continue") and one
chunk carries every token of an engine step (``previous_num_tokens[i] += len(output.token_ids)``: several with
speculative decoding), so capsim never counts chunks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

FINISH = re.compile(r'"finish_reason"\s*:\s*"(\w+)"')


@dataclass(frozen=True)
class GivenLengths:
    """Lengths the user states for every request of a file that does not record them (None: not stated)."""

    input_len: int | None = None
    output_len: int | None = None

    def __bool__(self) -> bool:
        return self.input_len is not None or self.output_len is not None


NONE_GIVEN = GivenLengths()


def payload(req: dict[str, Any]) -> dict[str, Any]:
    """The JSON payload an OpenAI request sent ({} where it is not JSON)."""
    text = (req.get("request_inputs") or {}).get("payload")
    if not isinstance(text, str) or not text.strip().startswith("{"):
        return {}
    try:
        p = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return p if isinstance(p, dict) else {}


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 1 else None


def capped_output(p: dict[str, Any], raws: list[str]) -> int | None:
    """The output length the payload's cap fixes (module docstring), or None."""
    cap = _int(p.get("max_tokens", p.get("max_completion_tokens")))
    if cap is None:
        return None
    finish = [m.group(1) for r in raws for m in FINISH.finditer(r)]
    if finish and finish[-1] == "length":
        return cap
    if p.get("stop"):
        return None
    low = _int(p.get("min_tokens"))
    return cap if p.get("ignore_eos") is True or (low is not None and low >= cap) else None


def token_id_prompt(p: dict[str, Any]) -> int | None:
    """The prompt length of a completions payload that sent token ids, or None."""
    prompt = p.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return len(prompt)
    return None


def counts(req: dict[str, Any], raws: list[str], prompt: int | None, output: int | None,
           given: GivenLengths) -> tuple[int | None, int | None, tuple[str, ...]]:
    """(prompt, output, how each missing count was filled) for one request whose responses carry no usage."""
    p, how = payload(req), []
    if output is None:
        output = capped_output(p, raws)
        how += ["output: the payload's max_tokens (finish_reason length, or ignore_eos/min_tokens)"] if output else []
    if prompt is None:
        prompt = token_id_prompt(p)
        how += ["prompt: the payload's token ids"] if prompt else []
    if output is None and given.output_len is not None:
        output, how = given.output_len, [*how, f"output: --output-len {given.output_len} given"]
    if prompt is None and given.input_len is not None:
        prompt, how = given.input_len, [*how, f"prompt: --input-len {given.input_len} given"]
    return prompt, output, tuple(how)


MISSING_FIX = {
    "prompt": ("give --input-len N, the prompt length every request had (GenAI-Perf's --synthetic-input-tokens-mean "
               "with stddev 0, as the server counts it), or rerun with --extra-inputs "
               "'{\"stream_options\": {\"include_usage\": true}}' so the server reports usage"),
    "output": ("give --output-len M, or rerun with --extra-inputs max_tokens:M --extra-inputs ignore_eos:true (the "
               "cap then fixes every length) or with usage reported (--extra-inputs "
               "'{\"stream_options\": {\"include_usage\": true}}')"),
}


def missing_error(origin: str, missing: dict[str, int], total: int) -> tuple[str, str]:
    """The one line naming what the file lacks and the flags that would supply it."""
    what = ", ".join(f"{n} of {total} requests have no {k} token count" for k, n in missing.items() if n)
    why = ("GenAI-Perf records prompts and outputs as text and counts tokens with the model's tokenizer, the "
           "responses carry no usage, and streamed chunks are not tokens")
    return f"{origin}: {what} ({why})", "; ".join(MISSING_FIX[k] for k, n in missing.items() if n)


__all__ = ["NONE_GIVEN", "GivenLengths", "capped_output", "counts", "missing_error", "payload", "token_id_prompt"]
