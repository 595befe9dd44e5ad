import json
import subprocess
import sys

import pytest

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
    loaded = _loaded_after("from ricl_apps.cli import app")
    assert not any(loaded[m] for m in ["torch", "transformers", "vllm", "faiss"]), loaded


def test_top_level_names_load_lazily():
    import ricl

    assert not _loaded_after("import ricl; ricl.__all__")["torch"]
    from ricl import AgentConfig, GroundingAgent, load_dataset
    from ricl.agent import GroundingAgent as direct

    assert GroundingAgent is direct and AgentConfig.__name__ == "AgentConfig"
    assert callable(load_dataset) and "GroundingAgent" in dir(ricl)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ricl.nope  # noqa: B018
