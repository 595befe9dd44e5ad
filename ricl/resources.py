"""Data files shipped with ricl: found in the installed package or in a checkout.

The repository's top-level folders stay the source of truth (``prompts/``, the demo's
``eval/configs`` and ``eval/experiments``, the vLLM launcher in ``scripts/``). A wheel
carries copies of them under ``<package>/_shipped/`` (``setup.py`` copies them at build
time); an editable install or a plain checkout reads them where they are.

    shipped("prompts")                      # -> .../ricl/_shipped/prompts or <repo>/prompts
    shipped("eval/configs/phantom_knn.yaml", package="ricl_apps")
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ricl.errors import RiclError

__all__ = ["SHIPPED", "checkout_root", "shipped"]

# package -> the repository paths a wheel carries for it (setup.py reads this table)
SHIPPED: dict[str, tuple[str, ...]] = {
    "ricl": ("prompts", "scripts"),
    "ricl_apps": ("eval/configs", "eval/experiments"),
}


def checkout_root() -> Path | None:
    """The repository root when ricl runs from a checkout (editable install), else None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "ricl").is_dir() else None


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RiclError(f"package {package!r} is not installed; reinstall ricl")
    return Path(next(iter(spec.submodule_search_locations)))


def shipped(relpath: str, package: str = "ricl") -> Path:
    """The shipped file or folder ``relpath`` (a repository path such as ``prompts``).

    Looks in ``<package>/_shipped/<relpath>`` (an installed wheel), then in the checkout.
    Raises RiclError naming both places when neither has it.
    """
    places = [_package_dir(package) / "_shipped" / relpath]
    root = checkout_root()
    if root is not None:
        places.append(root / relpath)
    for place in places:
        if place.exists():
            return place
    raise RiclError(
        f"{relpath}: not shipped with this install (looked in {', '.join(map(str, places))}); "
        "reinstall ricl from a wheel or a checkout"
    )
