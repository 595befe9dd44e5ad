#!/usr/bin/env bash
# The wheel works outside a checkout: build it, install it into a fresh virtual environment
# in a temporary directory, and there run a GroundingAgent call with a shipped strategy and
# the demo (`ricl demo`), which reads its configs from the wheel.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ricl-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PY="${PYTHON:-python3}"

"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
"$PY" -m venv "$WORK/venv"
# shellcheck disable=SC1091
. "$WORK/venv/bin/activate"
pip install -q --upgrade pip
pip install -q torch==2.13.0            # the CPU wheel first (any other torch pulls CUDA)
pip install -q "$WORK"/dist/ricl-*.whl
cd "$WORK"                               # nothing of the checkout is reachable from here
python - <<'PY'
import ricl, ricl_apps
from pathlib import Path

for mod in (ricl, ricl_apps):
    assert "site-packages" in mod.__file__, f"{mod.__name__} imported from {mod.__file__}"
from PIL import Image

from ricl import GroundingAgent
from ricl.prompting.strategies import list_strategies, load_strategy

names = list_strategies()
assert {"zero-shot", "k-shot", "k-shot-interleaved", "text-only"} <= set(names), names
for name in names:
    assert Path(load_strategy(name).source).is_relative_to(Path(ricl.__file__).parent)
agent = GroundingAgent({"backend": "knn", "strategy": "zero-shot", "k": 0})
result = agent.ground(Image.new("L", (64, 64), 100), "small nodule in the right upper lobe")
assert result.status in ("ok", "empty"), result
print(f"wheel: GroundingAgent zero-shot -> {result.status}; strategies {names}")
PY
ricl demo --workdir "$WORK/demo"
echo "wheel check passed ($WORK)"
