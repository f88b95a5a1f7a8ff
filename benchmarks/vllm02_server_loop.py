"""Host time per running request per step of vLLM 0.2.x's API server loop (``vllm.entrypoints.api_server`` over
``AsyncLLMEngine``), the part the engine waits for.

Each step, the server's event loop (uvicorn's, which also serves HTTP) hands every request's output to its stream
(vllm/engine/async_llm_engine.py v0.2.3 ``engine_step`` L340-343: ``RequestTracker.process_request_output`` L101-112,
``AsyncStream.put`` L49-52), then yields once (``run_engine_loop`` L359-360: ``await asyncio.sleep(0)``). The
request handlers woken by those puts run before the engine loop resumes: each takes its output from the stream
through ``AsyncLLMEngine.generate`` (L438-439) and, in the non-streaming ``/generate`` handler DistServe's client
uses (``"stream": False``), awaits ``request.is_disconnected()`` (vllm/entrypoints/api_server.py v0.2.3 L57-63),
Starlette's check that enters a cancelled ``anyio.CancelScope`` around the ASGI ``receive``. Only then does the
engine loop send the next step (``engine.step.remote()`` or ``step_async``), so this time is exposed; what the
handlers do after their first suspension overlaps the next step and is timed apart (``overlapped`` lines).

``--path stream`` times the streaming handler instead (``"stream": true``, as the client that produced DistServe's
runs sends it: LLMServe/DistServe distserve/evaluation/2-benchmark-serving/backends.py at 10a6502, 2024-04-23,
L82): per output, ``stream_results`` (api_server.py L44-51) joins the prompt and the text so far, JSON-encodes them
and Starlette's ``StreamingResponse`` sends the chunk through two middleware ``send`` wrappers to uvicorn's
``RequestResponseCycle.send``, which frames it (chunked encoding) and writes it to the socket; a forked process
drains the socket as the client would. The prompt is 3,300 characters (a ShareGPT prompt of ~770 OPT tokens) and
the text so far 400.

This runs vLLM 0.2.3's own ``AsyncStream`` and ``RequestTracker`` (imported from the release's wheel, the engine
imports they do not use stubbed) under the event loop named, with the handler loop of api_server.py L57-63 and
a ``receive`` that waits on an event as uvicorn's ``RequestResponseCycle.receive`` does once a request's body is
read. Installed Starlette and anyio stand in for the 2024 releases; their ``is_disconnected`` is the same code.

    pip download vllm==0.2.3 --no-deps -d /tmp/vllm023 && cd /tmp/vllm023 && unzip -q vllm-0.2.3-*.whl 'vllm/*'
    python benchmarks/vllm02_server_loop.py --vllm-dir /tmp/vllm023 [--loop uvloop] [--path stream]

Prints ``name: value`` lines (median over repeats, microseconds per running request per step), the headline last:
the exposed time at 32 running requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
import types
from collections.abc import AsyncIterator
from typing import Any


def _import_tracker(root: str) -> tuple[type, type]:
    """vLLM 0.2.3's RequestTracker and AsyncStream, with the engine modules they do not use stubbed."""
    pkg = types.ModuleType("vllm")
    pkg.__path__ = [f"{root}/vllm"]  # type: ignore[attr-defined]
    sys.modules["vllm"] = pkg
    eng = types.ModuleType("vllm.engine")
    eng.__path__ = [f"{root}/vllm/engine"]  # type: ignore[attr-defined]
    sys.modules["vllm.engine"] = eng
    stubs = {"vllm.config": {"ModelConfig": object}, "vllm.engine.arg_utils": {"AsyncEngineArgs": object},
             "vllm.engine.llm_engine": {"LLMEngine": type("LLMEngine", (), {})},
             "vllm.engine.ray_utils": {"initialize_cluster": None, "ray": None},
             "vllm.outputs": {"RequestOutput": object}, "vllm.sampling_params": {"SamplingParams": object}}
    for name, attrs in stubs.items():
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
    from vllm.engine.async_llm_engine import AsyncStream, RequestTracker
    return RequestTracker, AsyncStream


class _Receive:
    """An ASGI receive after the request body was read: waits until the client disconnects (uvicorn's
    RequestResponseCycle.receive waits on its message_event)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        await self.event.wait()
        return {"type": "http.disconnect"}


async def _generate(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """AsyncLLMEngine.generate (async_llm_engine.py v0.2.3 L438-439): the stream's outputs, re-yielded."""
    async for out in stream:
        yield out


async def _handler(request: Any, stream: AsyncIterator[Any], seen: list[int]) -> None:
    """The non-streaming /generate loop (api_server.py v0.2.3 L57-63)."""
    final = None
    async for out in _generate(stream):
        if await request.is_disconnected():
            return
        final = out
        seen[0] += 1
    assert final is not None


PROMPT, TEXT = "w" * 3300, "x" * 400  # characters: a ~770-token ShareGPT prompt, the text generated so far


async def _stream_results(stream: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """api_server.py v0.2.3 L44-51: each output as the prompt plus its text so far, JSON, NUL-terminated."""
    async for out in _generate(stream):
        text_outputs = [out.prompt + o.text for o in out.outputs]
        yield (json.dumps({"text": text_outputs}) + "\0").encode("utf-8")


class _Cycle:
    """uvicorn's RequestResponseCycle.send for a body chunk of a chunked response: wait while the socket's writes
    are paused, frame the chunk, write it to the transport."""

    def __init__(self, transport: asyncio.Transport, proto: asyncio.Protocol) -> None:
        self.transport, self.proto = transport, proto

    async def send(self, message: dict[str, Any]) -> None:
        if self.proto.paused:  # type: ignore[attr-defined]
            await self.proto.resumed.wait()  # type: ignore[attr-defined]
        body = message.get("body", b"")
        content = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
        if not message.get("more_body", False):
            content.append(b"0\r\n\r\n")
        self.transport.write(b"".join(content))


class _Flow(asyncio.Protocol):
    def __init__(self) -> None:
        self.paused, self.resumed = False, asyncio.Event()

    def pause_writing(self) -> None:
        self.paused = True
        self.resumed.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self.resumed.set()


async def _stream_handler(send: Any, stream: AsyncIterator[Any], seen: list[int]) -> None:
    """Starlette's StreamingResponse.stream_response over two middleware send wrappers (ServerErrorMiddleware,
    ExceptionMiddleware)."""
    async def outer(message: dict[str, Any]) -> None:
        await send(message)

    async def inner(message: dict[str, Any]) -> None:
        await outer(message)

    async for chunk in _stream_results(stream):
        await inner({"type": "http.response.body", "body": chunk, "more_body": True})
        seen[0] += 1
    await inner({"type": "http.response.body", "body": b"", "more_body": False})


async def _client_socket() -> tuple[asyncio.Transport, _Flow, int]:
    """A socket whose other end a forked process reads and discards, as a local client would."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the client: drain until the server closes
        a.close()
        while b.recv(1 << 20):
            pass
        os._exit(0)
    b.close()
    transport, proto = await asyncio.get_running_loop().create_connection(_Flow, sock=a)
    return transport, proto, pid  # type: ignore[return-value]


async def _measure(tracker_cls: type, n: int, steps: int, path: str = "generate") -> tuple[float, float]:
    """(exposed, overlapped) median seconds per step for ``n`` running requests."""
    from starlette.requests import Request

    tracker = tracker_cls()
    tracker.init_event()
    seen, tasks, pid = [0], [], 0
    if path == "stream":
        transport, proto, pid = await _client_socket()
        cycle = _Cycle(transport, proto)
    for i in range(n):
        stream = tracker.add_request(str(i))
        if path == "stream":
            tasks.append(asyncio.create_task(_stream_handler(cycle.send, stream, seen)))
        else:
            request = Request({"type": "http", "method": "POST", "path": "/generate", "headers": []}, _Receive())
            tasks.append(asyncio.create_task(_handler(request, stream, seen)))
    tracker.get_new_and_finished_requests()  # the engine loop registers the new streams (L321-322)
    await asyncio.sleep(0)
    outputs = [types.SimpleNamespace(request_id=str(i), finished=False, prompt=PROMPT,
                                     outputs=[types.SimpleNamespace(text=TEXT)]) for i in range(n)]
    exposed, overlapped = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        for out in outputs:  # engine_step L341-343
            tracker.process_request_output(out, verbose=False)
        await asyncio.sleep(0)  # run_engine_loop L360: the woken handlers run first
        t1 = time.perf_counter()
        target = seen[0]
        while seen[0] < target or any(not s._queue._getters for s in tracker._request_streams.values()):
            await asyncio.sleep(0)  # stands in for the step: the handlers finish meanwhile
        exposed.append(t1 - t0)
        overlapped.append(time.perf_counter() - t1)
    for out in outputs:
        out.finished = True
        tracker.process_request_output(out, verbose=False)
    await asyncio.gather(*tasks)
    if pid:
        transport.close()
        await asyncio.sleep(0.05)  # the loop closes the socket on its next pass; the client then sees EOF
        os.waitpid(pid, 0)
    return statistics.median(exposed), statistics.median(overlapped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm-dir", required=True, help="a directory holding vLLM 0.2.3's vllm/ package (unzipped wheel)")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--path", choices=("generate", "stream"), default="generate",
                    help="the non-streaming /generate handler, or the streaming one")
    args = ap.parse_args()
    tracker = _import_tracker(args.vllm_dir)[0]
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    res = {n: asyncio.run(_measure(tracker, n, args.steps, args.path)) for n in (1, 8, 32, 128)}
    name = f"{args.path}_{args.loop}"
    for n, (exp, ovl) in res.items():
        print(f"{name}_requests_{n}_exposed_us_per_request: {exp / n * 1e6:.2f}")
        print(f"{name}_requests_{n}_overlapped_us_per_request: {ovl / n * 1e6:.2f}")
    print(f"{name}_requests_32_exposed_us_per_request: {res[32][0] / 32 * 1e6:.2f}")


if __name__ == "__main__":
    main()
