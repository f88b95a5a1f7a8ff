"""Generated bad inputs for every command (hypothesis): non-finite, negative, zero, huge and wrong-typed numbers,
unknown names, options that do not apply, malformed files. Each must end with exit 2 and exactly one line on stderr
that names the option or file at fault: never exit 0, never a traceback, never a bare Python exception.

The numeric options are read from the commands themselves, so an option added later is covered without an edit
here. Everything runs in-process through CliRunner and fails before any simulation or search starts."""

from __future__ import annotations

import inspect
import json
import re
import typing
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from capsim.cli import app
from capsim.cli.options import MAX_INT

RUNNER = CliRunner()
GOOD_CONFIG = Path(__file__).parent / "fixtures" / "reliability" / "fx" / "good_llama.json"
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")
FAST = settings(max_examples=4, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# A valid, quick base for each command; the generated option is added to it.
BASE = {
    ("flops",): ["-m", "llama-2-7b"],
    ("memory", "train"): ["-m", "llama-2-7b"],
    ("memory", "serve"): ["-m", "llama-2-7b"],
    ("train",): ["-m", "llama-2-7b"],
    ("serve",): ["-m", "llama-2-7b", "-w", "chatbot", "-n", "20"],
    ("plan", "train"): ["-m", "llama-2-7b", "-n", "8"],
    ("plan", "serve"): ["-m", "llama-2-7b", "--rate", "1", "--ttft-p99", "2"],
    ("whatif", "quantization"): ["-m", "llama-2-7b"],
    ("whatif", "sparsity"): ["-m", "llama-2-7b"],
    ("whatif", "distill"): [],
    ("whatif", "precision"): ["-m", "llama-2-7b"],
    ("whatif", "batch"): ["-m", "llama-2-7b"],
    ("scale", "serve"): ["-m", "llama-3-8b"],
    ("scale", "train"): ["-m", "llama-2-7b"],
    ("scale", "model-size"): [],
    ("validate",): ["params"],
    ("calibrate",): ["--quick", "--ops", "memory"],
}
# Numeric options where 0 is nonsense although the option's own bound admits it.
ZERO_IS_BAD = {"rate", "cv", "duration", "time_scale", "slo_ttft", "slo_tpot", "deadline_days", "budget_usd",
               "ttft_p99", "tpot_p99", "goodput", "gemm_speedup", "tokens", "critical_batch",
               "gpu_memory_utilization", "usable_memory", "period", "uniform_high"}
# Where a negative number means something (none today); the dashboard's port is not exercised (it starts a server).
NEGATIVE_OK: set[str] = set()


def _walk(command, path=()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))
    else:
        yield path, command


def _numeric_options() -> list[tuple[tuple[str, ...], str, str, type]]:
    """(command path, parameter name, flag, int or float) for every numeric option of every command."""
    out = []
    for path, command in _walk(typer.main.get_command(app)):
        if path not in BASE:
            continue
        hints = typing.get_type_hints(inspect.unwrap(command.callback), include_extras=True)
        for param in command.params:
            hint = hints.get(param.name)
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
            kinds = [a for a in typing.get_args(base) if a is not type(None)] or [base]
            if kinds[0] in (int, float) and param.opts:
                out.append((path, param.name, max(param.opts, key=len), kinds[0]))
    return out


NUMERIC = _numeric_options()


def _run(args: list[str]):
    return RUNNER.invoke(app, args)


def assert_rejected(args: list[str], *names: str) -> None:
    """Exit 2, one line on stderr starting ``error:`` and naming one of ``names``, nothing on stdout."""
    result = _run(args)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    shown = f"capsim {' '.join(args)}\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), (shown, result.exception)
    assert result.exit_code == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error: ") and not result.stdout.strip(), shown
    assert not EXCEPTION_NAME.search(lines[0]), shown
    if names:
        assert any(n.lower() in lines[0].lower() for n in names), shown


def test_every_command_is_covered():
    paths = {path for path, _ in _walk(typer.main.get_command(app))}
    assert paths - set(BASE) <= {("catalog",), ("dashboard",)}  # no numeric options / starts a server
    assert len(NUMERIC) > 90


# --- numbers: non-finite, huge, wrong type, negative, zero ---------------------------------------------------------
NON_FINITE = st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "-1e999", "infinity"])
WRONG_TYPE = st.one_of(st.sampled_from(["", "abc", "1,2", "true", "1e3x", "0x10", "--", "one"]),
                       st.text(alphabet="abcxyz_ !?", min_size=1, max_size=6))
HUGE_INT = st.integers(MAX_INT + 1, 10**30).map(str)


@pytest.mark.parametrize(("path", "name", "flag", "kind"), NUMERIC, ids=[f"{' '.join(p)} {f}" for p, _, f, _ in NUMERIC])
@FAST
@given(data=st.data())
def test_nonsense_numbers_are_rejected(path, name, flag, kind, data):
    strategies = [NON_FINITE, WRONG_TYPE]
    if kind is int:
        strategies.append(HUGE_INT)
        strategies.append(st.floats(0.1, 1e6).filter(lambda x: not x.is_integer()).map(repr))
    if name not in NEGATIVE_OK:
        strategies.append((st.integers(-10**6, -1) if kind is int else st.floats(-1e12, -1e-9)).map(str))
    if name in ZERO_IS_BAD:
        strategies.append(st.sampled_from(["0", "0.0", "-0"]))
    value = data.draw(st.one_of(*strategies), label=flag)
    assert_rejected([*path, *BASE[path], f"{flag}={value}"], flag, name.replace("_", "-"), name)


# --- unknown names --------------------------------------------------------------------------------------------------
UNKNOWN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).map(lambda s: f"zz{s}")
NAMED = [
    (["flops", "-m"], ["model"]),
    (["memory", "serve", "-m", "llama-2-7b", "-a"], ["accelerator"]),
    (["memory", "serve", "-m", "llama-2-7b", "-q"], ["--quantization", "-q"]),
    (["memory", "train", "-m", "llama-2-7b", "--precision"], ["precision"]),
    (["memory", "train", "-m", "llama-2-7b", "--recompute"], ["--recompute"]),
    (["train", "-m", "llama-2-7b", "--framework"], ["--framework"]),
    (["train", "-m", "llama-2-7b", "--calibration"], ["calibration"]),
    (["serve", "-m", "llama-2-7b", "-n", "5", "-w"], ["workload"]),
    (["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "5", "--engine"], ["engine"]),
    (["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "5", "--router"], ["--router"]),
    (["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "5", "--scheduler"], ["--scheduler"]),
    (["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n", "5", "--dtype"], ["dtype"]),
    (["serve", "-m", "llama-2-7b", "-n", "5", "--rate", "1", "--trace"], ["trace"]),
    (["plan", "serve", "-m", "llama-2-7b", "--ttft-p99", "2", "--engine"], ["engine"]),
    (["plan", "serve", "-m", "llama-2-7b", "--ttft-p99", "2", "-a"], ["accelerator"]),
    (["plan", "serve", "-m", "llama-2-7b", "--ttft-p99", "2", "--quantizations"], ["--quantizations"]),
    (["whatif", "distill", "--student"], ["model"]),
    (["scale", "train", "-m", "llama-2-7b", "-a"], ["accelerator"]),
    (["validate"], ["suite", "validate"]),
    (["catalog"], ["kind", "catalog"]),
]


@pytest.mark.parametrize(("args", "names"), NAMED, ids=[" ".join(a) for a, _ in NAMED])
@FAST
@given(name=UNKNOWN)
def test_unknown_names_are_rejected(args, names, name):
    assert_rejected([*args, name], *names)


def test_an_unknown_option_or_command_is_one_line():
    assert_rejected(["serve", "--no-such-option", "1"], "--no-such-option")
    assert_rejected(["no-such-command"], "no-such-command")
    assert_rejected(["plan", "serve", "-m"], "-m")  # an option without its value


# --- lists and NAME=VALUE pairs -------------------------------------------------------------------------------------
BAD_ITEM = st.one_of(NON_FINITE, st.sampled_from(["", "abc", "-1", "0"]))
LISTS = [
    (["serve", "-m", "llama-2-7b", "--prompt-tokens", "10", "--output-tokens", "5", "-n", "5", "--arrival",
      "diurnal", "--diurnal"], "--diurnal", True),
    (["plan", "serve", "-m", "llama-2-7b", "--ttft-p99", "2", "--diurnal"], "--diurnal", True),
    (["scale", "serve", "-m", "llama-3-8b", "--rates"], "--rates", False),
    (["scale", "train", "-m", "llama-2-7b", "--gpus"], "--gpus", False),
    (["whatif", "batch", "-m", "llama-2-7b", "--batches"], "--batches", False),
    (["scale", "model-size", "--flops"], "--flops", False),
]


@pytest.mark.parametrize(("args", "flag", "zero_ok"), LISTS, ids=[f for _, f, _ in LISTS])
@FAST
@given(data=st.data())
def test_a_bad_item_in_a_list_is_rejected(args, flag, zero_ok, data):
    bad = data.draw(BAD_ITEM.filter(lambda v: not (zero_ok and v == "0")))
    items = data.draw(st.lists(st.sampled_from(["1", "2", "8"]), max_size=3))
    at = data.draw(st.integers(0, len(items)))
    assert_rejected([*args, ",".join([*items[:at], bad, *items[at:]])], flag)


PAIRS = ["plan", "serve", "-m", "llama-2-7b", "--ttft-p99", "2", "-a", "A100-SXM4-80GB"]


@FAST
@given(flag=st.sampled_from(["--price", "--limit"]),
       pair=st.one_of(st.sampled_from(["A100-SXM4-80GB", "A100-SXM4-80GB=", "=3", "A100-SXM4-80GB=abc",
                                       "A100-SXM4-80GB=-3", "A100-SXM4-80GB=nan", "A100-SXM4-80GB=inf",
                                       "H100-SXM5-80GB=3", "h1000=3"]),
                      UNKNOWN.map(lambda n: f"{n}=2")))
def test_bad_price_and_limit_pairs_are_rejected(flag, pair):
    assert_rejected([*PAIRS, flag, pair], flag, "--accelerators", "accelerator")


def test_a_fractional_gpu_limit_is_rejected():
    assert_rejected([*PAIRS, "--limit", "A100-SXM4-80GB=2.5"], "--limit")


# --- options that do not apply ---------------------------------------------------------------------------------------
SERVE = ["serve", "-m", "llama-2-7b", "-n", "5"]
OWN = [*SERVE, "--prompt-tokens", "100", "--output-tokens", "10", "--rate", "1"]
INAPPLICABLE = [
    ([*OWN, "--diurnal", "1,2"], "--diurnal"),
    ([*OWN, "--period", "60"], "--period"),
    ([*OWN, "--cv", "2"], "--cv"),
    ([*OWN, "--clients", "4"], "--clients"),
    ([*OWN, "--time-scale", "2"], "--time-scale"),
    ([*OWN, "--length-cv", "2"], "--length-cv"),
    ([*OWN, "--uniform-high", "3"], "--uniform-high"),
    ([*OWN, "--router", "random"], "--router"),
    ([*SERVE, "-w", "chatbot", "--lengths", "uniform"], "--lengths"),
    ([*SERVE, "-w", "chatbot", "--prompt-tokens", "100", "--output-tokens", "10"], "--workload"),
    ([*SERVE, "-w", "chatbot", "--time-scale", "2"], "--time-scale"),
    ([*SERVE, "-w", "azure-conv", "--rate", "2", "--time-scale", "2"], "--time-scale"),
    ([*SERVE, "--trace", "azure-conv", "--rate", "1", "--lengths", "uniform"], "--lengths"),
    ([*SERVE, "--arrival", "closed", "--clients", "2", "--prompt-tokens", "9", "--output-tokens", "9",
      "--duration", "5"], "--duration"),
    ([*SERVE, "--arrival", "diurnal", "--diurnal", "1,2", "--prompt-tokens", "9", "--output-tokens", "9",
      "--rate", "3"], "--rate"),
    (["plan", "serve", "-m", "llama-2-7b", "--ttft-p99", "2", "-w", "chatbot", "--trace", "azure-conv"], "--trace"),
    (["flops", "-m", "llama-2-7b", "--hf-config", str(GOOD_CONFIG)], "--hf-config"),
    (["train", "-m", "llama-2-7b", "--hf-config", str(GOOD_CONFIG)], "--hf-config"),
]


@pytest.mark.parametrize(("args", "flag"), INAPPLICABLE, ids=[f for _, f in INAPPLICABLE])
def test_options_that_do_not_apply_are_rejected(args, flag):
    assert_rejected(args, flag)


# --- malformed files -------------------------------------------------------------------------------------------------
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                        st.lists(st.integers(), max_size=3))
HF_FIELDS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
             "vocab_size", "head_dim", "max_position_embeddings", "num_local_experts"]
GOOD_LLAMA = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256}
BAD_FIELD = st.one_of(st.integers(-10**6, 0), st.integers(2**40, 2**80), st.floats(allow_nan=False).filter(
    lambda x: not float(x).is_integer()), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))


def _json_text(value: object) -> str:
    return json.dumps(value)


BAD_JSON = st.one_of(
    JSON_SCALAR.map(_json_text),  # JSON that is not an object
    st.sampled_from(["", "{", "{'a': 1}", '{"a": NaN}', '{"a": Infinity}', "[1,", "\x00\x01"]),
    st.builds(lambda k, v: json.dumps({**GOOD_LLAMA, k: v}), st.sampled_from(HF_FIELDS), BAD_FIELD),
)


@FAST
@given(text=BAD_JSON, command=st.sampled_from([["flops"], ["memory", "train", "--tp", "1"], ["train"],
                                                ["serve", "-w", "chatbot", "-n", "5"]]))
def test_a_bad_hugging_face_config_is_rejected(tmp_path_factory, text, command):
    path = tmp_path_factory.mktemp("hf") / "config.json"
    path.write_text(text)
    assert_rejected([*command, "--hf-config", str(path)], "config", "model.")


@FAST
@given(text=st.one_of(BAD_JSON, st.builds(lambda v: json.dumps({"schema": "capsim.calibration/1", "kind": "measured",
                                                                 "name": "x", "device": {}, "fitted": v}),
                                          JSON_SCALAR)),
       command=st.sampled_from([["train", "-m", "llama-2-7b"], ["serve", "-m", "llama-2-7b", "-w", "chatbot", "-n",
                                                                  "5"], ["validate", "training"]]))
def test_a_bad_calibration_file_is_rejected(tmp_path_factory, text, command):
    path = tmp_path_factory.mktemp("cal") / "cal.json"
    path.write_text(text)
    assert_rejected([*command, "--calibration", str(path)], "calibration")


@settings(FAST, max_examples=2)
@given(garbage=st.binary(min_size=1, max_size=64).filter(lambda b: not b.isascii()))
def test_binary_files_are_rejected(tmp_path_factory, garbage):
    path = tmp_path_factory.mktemp("bin") / "x.bin"
    path.write_bytes(b"\xd4\xcc" + garbage)
    assert_rejected(["flops", "--hf-config", str(path)], "config")
    assert_rejected(["serve", "-m", "llama-2-7b", "--trace", str(path)], "trace")
    assert_rejected(["validate", "params", "--file", str(path)], "--file")
    assert_rejected(["train", "-m", "llama-2-7b", "--calibration", str(path)], "calibration")


TRACE_HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens"
BAD_CELL = st.one_of(st.sampled_from(["", "abc", "-5", "0", "1.5", "inf", "nan", "99999999999999999999"]),
                     st.text(alphabet="xyz!", min_size=1, max_size=3))


@FAST
@given(cell=BAD_CELL, column=st.integers(1, 2), rows=st.integers(1, 4), at=st.integers(0, 3))
def test_a_bad_trace_row_is_rejected(tmp_path_factory, cell, column, rows, at):
    good = [[str(float(i)), "100", "20"] for i in range(rows)]
    row = good[min(at, rows - 1)]
    row[column] = cell
    path = tmp_path_factory.mktemp("trace") / "t.csv"
    path.write_text("\n".join([TRACE_HEADER, *(",".join(r) for r in good)]) + "\n")
    assert_rejected(["serve", "-m", "llama-2-7b", "--trace", str(path)], "trace")


@pytest.mark.parametrize("text", ["", TRACE_HEADER + "\n", "a,b\n1,2\n", TRACE_HEADER + "\n0,1,inf\n",
                                  TRACE_HEADER + "\ninf,1,1\n", TRACE_HEADER + '\n0,1,1\n1,"2,3\n'])
def test_an_empty_or_malformed_trace_is_rejected(tmp_path, text):
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert_rejected(["serve", "-m", "llama-2-7b", "--trace", str(path)], "trace")
    assert_rejected(["plan", "serve", "-m", "llama-2-7b", "--ttft-p99", "2", "--trace", str(path)], "trace")


PARAMS_HEADER = "source,model,metric,value,unit,digits"


@FAST
@given(column=st.sampled_from(["value", "unit", "digits"]), cell=BAD_CELL)
def test_a_bad_validation_row_is_rejected(tmp_path_factory, column, cell):
    row = {"source": "me", "model": "llama-2-7b", "metric": "params_total", "value": "6.7", "unit": "B",
           "digits": "2"}
    assume(not (column == "digits" and cell == "0"))  # zero digits is valid (an exact count)
    assume(not (column == "value" and cell in ("99999999999999999999", "1.5")))  # numbers a source may publish
    row[column] = cell
    path = tmp_path_factory.mktemp("val") / "v.csv"
    path.write_text(PARAMS_HEADER + "\n" + ",".join(row.values()) + "\n")
    assert_rejected(["validate", "params", "--file", str(path)], "--file", f"{column}: line 2")


@pytest.mark.parametrize("suite", ["params", "memory", "training", "serving", "planner"])
@pytest.mark.parametrize("text", ["", "a,b\n1,2\n", PARAMS_HEADER + "\n", PARAMS_HEADER + "\nme,llama-2-7b\n"])
def test_an_empty_short_or_foreign_validation_csv_is_rejected(tmp_path, suite, text):
    path = tmp_path / "v.csv"
    path.write_text(text)
    assert_rejected(["validate", suite, "--file", str(path)], "--file")


@pytest.mark.parametrize("where", ["../../../../../../etc/passwd", "/etc/passwd", "../loaders.py", "..", "traces/.."])
def test_a_validation_row_cannot_open_files_outside_the_data_folder(tmp_path, where):
    header = ("source,model,gpu,gpus,tp,precision,engine,workload,trace,batch,input_tokens,output_tokens,rate_rps,"
              "metric,value,unit")
    path = tmp_path / "vs.csv"
    path.write_text(f"{header}\ndistserve,opt-13b,A100-SXM4-80GB,1,1,fp16,vllm,replay,{where},,850,163,1,"
                    "ttft_mean,161.2,ms\n")
    assert_rejected(["validate", "serving", "--file", str(path)], "trace")
