"""The house's layers, read from the import graph: wire knowledge at the bottom (pure data and functions),
then the fake servers and the client (neither imports the other), then recording, then the tools and the
CLI. Nothing imports upward."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
WEB = {"aiohttp", "httpx", "faker", "fastapi", "starlette"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in ("harness", "fake_servers"):
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = p
    return out


def imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, at any place in the file (lazy imports count), as dotted names."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


GRAPH = {m: imports(m, p) for m, p in modules().items()}


def ours(deps):
    return {d for d in deps if d in GRAPH}


def test_the_wire_layer_is_pure_and_at_the_bottom():
    wire = [m for m in GRAPH if m.startswith("harness.wire")]
    assert {"harness.wire.faults", "harness.wire.mutate", "harness.wire.errors", "harness.wire.serde",
            "harness.wire.vllm_requests", "harness.wire.dynamo_requests", "harness.wire.profiles"} <= set(wire)
    for m in wire:
        up = {d for d in ours(GRAPH[m]) if not d.startswith("harness.wire")}
        web = {d.split(".")[0] for d in GRAPH[m]} & WEB
        assert not up and not web, (m, up, web)


def test_the_fakes_reach_only_the_bottom_layer_and_their_utilities():
    allowed = ("fake_servers", "harness.wire", "harness.tokenizer", "harness.serve")
    for m in (m for m in GRAPH if m.startswith("fake_servers")):
        bad = {d for d in ours(GRAPH[m]) if not d.startswith(allowed) and d != "harness"}
        assert not bad, (m, bad)


def test_client_and_recording_never_reach_the_fakes_even_through_others():
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in ours(GRAPH[todo.pop()]):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    for m in (m for m in GRAPH if m.startswith(("harness.client", "harness.recording"))):
        fakes = {d for d in reach(m) if d.startswith("fake_servers")}
        assert not fakes, (m, sorted(fakes)[:3])
    assert not any(d.startswith("harness.recording") for d in reach("harness.client"))


def test_nothing_below_the_cli_imports_it():
    for m in GRAPH:
        if not m.startswith("harness.cli") and m != "harness.__main__":
            assert not {d for d in ours(GRAPH[m]) if d == "harness.cli" or d.startswith("harness.cli_")}, m


def test_the_check_can_fail():
    """The graph reader sees a lazy import inside a function as an import."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.py"
        p.write_text("def f():\n    from fake_servers import server\n")
        assert "fake_servers.server" in imports("harness.recording.x", p)


def test_every_package_is_in_the_wheel():
    """A package left out of pyproject's list works in an editable install and breaks the wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in modules().items() if p.name == "__init__.py"}
    assert packages - listed == set()
