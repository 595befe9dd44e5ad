"""Build hook: the wheel carries the repository's data folders as package data.

``prompts/``, ``scripts/``, ``eval/configs`` and ``eval/experiments`` stay where they are
(the source of truth); ``build_py`` copies them under ``<package>/_shipped/`` as listed in
``ricl.resources.SHIPPED``, where :func:`ricl.resources.shipped` finds them in an install.
Everything else is in ``pyproject.toml``.
"""

import ast
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


def _shipped_table() -> dict[str, tuple[str, ...]]:
    # read the table without importing ricl (its dependencies are not in the build env)
    tree = ast.parse((HERE / "ricl" / "resources.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SHIPPED":
            return ast.literal_eval(node.value)
    raise RuntimeError("ricl/resources.py: SHIPPED table not found")


class BuildWithShipped(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        for package, paths in _shipped_table().items():
            for rel in paths:
                src = HERE / rel
                dst = Path(self.build_lib) / package / "_shipped" / rel
                if dst.exists():
                    shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
                shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildWithShipped})
