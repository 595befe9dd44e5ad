import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "vllm", "faiss", "sklearn", "scipy", "pydicom", "PIL"]


def _loaded_after(statement: str) -> dict[str, bool]:
    code = (
        f"import sys, json; {statement}; "
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_import_ricl_is_light():
    loaded = _loaded_after("import ricl")
    assert not any(loaded.values()), loaded


def test_cli_help_does_not_import_heavy_libraries():
    loaded = _loaded_after("from ricl.cli import app")
    assert not any(loaded[m] for m in ["torch", "transformers", "vllm", "faiss"]), loaded
