"""Layers that only point down (issue 15, item 7), read from the source: the pure model (specs, analytic, perf,
sim, plan) imports no face, no torch and no calibration loader, and reads and writes no files (specs excepted: it
loads the shipped catalogs and a Hugging Face config.json); calibration/ does not import validation/; the serving
simulator's modules import one another one way, at module level (no import cycle hidden behind a lazy import or a
TYPE_CHECKING block)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from capsim.perf import Perf

ROOT = Path(__file__).resolve().parents[1] / "capsim"
PURE = ("specs", "analytic", "perf", "sim", "plan")
NO_IO = ("analytic", "perf", "sim", "plan")
# What the pure layers never import: the faces, torch and its benchmarks, the calibration files' loader (callers
# pass a Perf: capsim.calibration.perf_for), the validation harness.
FORBIDDEN = ("torch", "streamlit", "typer", "rich", "kernels", "capsim.cli", "capsim.ui", "capsim.validation",
             "capsim.calibration")
# Calls that read or write files (or print): names, and attribute names on anything.
IO_NAMES = {"open", "print", "read_csv", "read_json", "read_parquet", "read_table", "loadtxt", "savetxt"}
IO_ATTRS = {"read_text", "read_bytes", "write_text", "write_bytes", "read_csv", "read_json", "read_parquet",
            "to_csv", "to_json", "to_parquet", "safe_load", "files", "mkdir", "unlink", "load", "dump", "save"}
IO_MODULES = ("json", "yaml", "pickle", "gzip", "shutil", "tempfile", "importlib.resources")


def modules(*packages: str) -> list[Path]:
    return sorted(f for p in packages for f in (ROOT / p).rglob("*.py"))


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an AST imports (top level, inside functions and under TYPE_CHECKING alike)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def where(f: Path, line: int) -> str:
    return f"{f.relative_to(ROOT.parent)}:{line}"


@pytest.mark.parametrize("path", modules(*PURE), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_layers_import_no_face_torch_or_loader(path):
    bad = [f"{where(path, line)} imports {name}" for line, name in imported(ast.parse(path.read_text()))
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, bad


@pytest.mark.parametrize("path", modules(*NO_IO), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_io_in_analytic_perf_sim_plan(path):
    tree = ast.parse(path.read_text())
    bad = [f"{where(path, line)} imports {name}" for line, name in imported(tree)
           if any(name == m or name.startswith(m + ".") for m in IO_MODULES)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if (isinstance(fn, ast.Name) and name in IO_NAMES) or (isinstance(fn, ast.Attribute) and name in IO_ATTRS):
                bad.append(f"{where(path, node.lineno)} calls {ast.unparse(fn)}")
    assert not bad, bad


def test_the_trace_loader_is_the_one_data_reader_the_model_reaches():
    """Workload presets replay shipped traces (and --trace files) through capsim.data.loaders, the way specs load
    the shipped catalogs; nothing else in the pure layers reaches a data file."""
    users = {str(f.relative_to(ROOT)) for f in modules(*PURE) for _, name in imported(ast.parse(f.read_text()))
             if name == "capsim.data" or name.startswith("capsim.data.")}
    assert users == {"sim/serving/presets.py"}, users


def test_calibration_does_not_import_validation():
    bad = [f"{where(f, line)} imports {name}" for f in modules("calibration")
           for line, name in imported(ast.parse(f.read_text())) if name.startswith("capsim.validation")]
    assert not bad, bad


def _serving_graph() -> dict[str, set[str]]:
    pkg = "capsim.sim.serving"
    graph = {}
    for f in modules("sim/serving"):
        if f.name == "__init__.py":
            continue
        deps = {name for _, name in imported(ast.parse(f.read_text())) if name.startswith(pkg + ".")}
        graph[f"{pkg}.{f.stem}"] = {d if d.count(".") == 3 else d.rsplit(".", 1)[0] for d in deps}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_serving_simulator_imports_point_one_way():
    """No cycle among sim/serving's modules, counting every import (a lazy or TYPE_CHECKING import would only
    hide one), and no import inside a function or under TYPE_CHECKING there at all."""
    graph = _serving_graph()
    order, done = [], set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m not in done:
            for d in sorted(graph[m]):
                visit(d, (*path, m))
            done.add(m)
            order.append(m)

    for m in sorted(graph):
        visit(m, ())
    assert order.index("capsim.sim.serving.replica") < order.index("capsim.sim.serving.fleet")
    hidden = []
    for f in modules("sim/serving"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [where(f, s.lineno) for s in ast.walk(node) if isinstance(s, (ast.Import, ast.ImportFrom))]
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                hidden.append(where(f, node.lineno))
    assert not hidden, hidden


def test_the_replica_knows_no_fleet_and_metrics_read_records():
    replica = ast.parse((ROOT / "sim/serving/replica.py").read_text())
    assert not [n for _, n in imported(replica) if "fleet" in n]
    metrics = ast.parse((ROOT / "sim/serving/metrics.py").read_text())
    names = {n.id for n in ast.walk(metrics) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(metrics) if isinstance(n, ast.Attribute)}
    assert not names & {"Fleet", "fleet", "Replica", "rep"}  # it reads ReplicaRecords and a RunInfo
    assert not [n for _, n in imported(metrics) if n.endswith((".fleet", ".replica")) or ".fleet." in n]


def test_pure_layers_refuse_a_calibration_name():
    """A name is not a device model: the pure functions say how to get one instead of loading it."""
    from capsim import Cluster, SpecError, TrainPlan, get_accelerator, get_model
    from capsim.analytic.training import step_time
    from capsim.calibration import default_calibration, perf_for

    acc = get_accelerator("a100")
    with pytest.raises(SpecError, match="perf_for"):
        step_time(get_model("gpt2"), TrainPlan(), Cluster(acc, 1), "A100-SXM4-80GB")
    assert isinstance(perf_for(acc), Perf) and perf_for(acc).name == default_calibration(acc)
    assert default_calibration("a100") == "A100-SXM4-80GB-profile"  # one rule: the GPU profile where one ships
    assert default_calibration("L4") == "L4"  # else the datasheet
