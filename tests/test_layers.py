"""The library (``ricl``) never imports the apps (``ricl_apps``), and its layers only import
downward. Read from the source (every import statement, including those inside functions),
so a lazy import cannot hide a wrong-way edge."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Library layers, lowest first: a module may import its own layer and those below it.
LAYERS = [
    {
        "ricl.errors",
        "ricl.types",
        "ricl.registry",
        "ricl.atomic",
        "ricl.resources",
        "ricl.config",
        "ricl.loading",
    },
    {"ricl.boxes"},
    {"ricl.data"},
    {"ricl.encoders"},
    {"ricl.retrieval"},
    {"ricl.evaluation"},
    {"ricl.prompting"},
    {"ricl.vlm"},
    {"ricl.agent", "ricl.agent_config", "ricl.agent_types", "ricl.two_pass"},
    {"ricl.integrations"},
]
# entry points, not library: ``python -m ricl`` runs the app's CLI; ``ricl`` re-exports lazily
EXEMPT = {"ricl.__main__", "ricl"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str | None = None) -> set[str]:
    """Absolute names of the ricl / ricl_apps modules ``path`` imports (anywhere in it)."""
    module = module or _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}  # `from ricl import agent`
    return {n for n in out if n.split(".")[0] in ("ricl", "ricl_apps")}


def _layer(name: str) -> int | None:
    best = None
    for i, members in enumerate(LAYERS):
        for m in members:
            if name == m or name.startswith(m + "."):
                best = i
    return best


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted((ROOT / "ricl").rglob("*.py"))}


def test_every_library_module_has_a_layer():
    missing = [m for m in _graph() if m not in EXEMPT and _layer(m) is None]
    assert not missing, f"add these modules to a layer in {__file__}: {missing}"


def test_library_never_imports_the_apps():
    wrong = [
        f"{m} imports {dep}"
        for m, deps in _graph().items()
        if m != "ricl.__main__"
        for dep in deps
        if dep.split(".")[0] == "ricl_apps"
    ]
    assert not wrong, "the library imports an app:\n" + "\n".join(wrong)


def test_library_layers_import_only_downward():
    wrong = []
    for m, deps in _graph().items():
        if m in EXEMPT:
            continue
        mine = _layer(m)
        for dep in deps:
            theirs = _layer(dep)
            if dep.startswith("ricl.") and theirs is not None and theirs > mine:
                wrong.append(f"{m} (layer {mine}) imports {dep} (layer {theirs})")
    assert not wrong, "upward imports in the library:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ricl_apps.cli import main", {"ricl_apps.cli", "ricl_apps.cli.main"}),
        ("def f():\n    import ricl_apps.demo", {"ricl_apps.demo"}),
        ("from ricl import agent", {"ricl", "ricl.agent"}),
        ("from .base import VLMBackend", {"ricl.vlm.base", "ricl.vlm.base.VLMBackend"}),
        ("import numpy", set()),
    ],
)
def test_the_reader_sees_lazy_relative_and_aliased_imports(tmp_path, source, expected):
    # the checker must see function-level imports, or the two tests above prove nothing
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    assert _imports(probe, module="ricl.vlm.probe") == expected


def test_no_test_imports_another_test_module():
    wrong = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                leaf = node.module.split(".")[-1]
                if leaf.startswith("test_"):
                    wrong.append(f"{path.name} imports {node.module}")
    assert not wrong, "share helpers through tests/fakes.py or conftest.py:\n" + "\n".join(wrong)
