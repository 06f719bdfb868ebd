"""Package namespaces that import their modules on first use.

A package lists its public names as ordinary imports under `if TYPE_CHECKING:` (so readers, type
checkers and tests/test_package_boundaries.py see them) and ends with

    __all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

`from clipvqd.diffusion import train_diffusion` then works as before, but importing a torch-free module
of the package (`clipvqd.diffusion.model_config`, `clipvqd.tokenizer.config`, ...) no longer loads the
package's torch stack: the workflow builds those configuration dataclasses while Snakemake reads the
Snakefile, to check a run's settings before any job starts, and that must stay fast.
"""

from __future__ import annotations

import ast
from importlib import import_module
from importlib.util import resolve_name
from pathlib import Path
from typing import Callable


def _type_checking_imports(package: str, init_file: str) -> dict[str, str]:
    """{name: absolute module} for every `from M import name` under `if TYPE_CHECKING:` in `init_file`."""
    exports: dict[str, str] = {}
    for node in ast.parse(Path(init_file).read_text()).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    module = resolve_name("." * statement.level + (statement.module or ""), package)
                    for alias in statement.names:
                        exports[alias.asname or alias.name] = module
    return exports


def lazy_exports(package: str, init_file: str) -> tuple[list[str], Callable[[str], object], Callable[[], list]]:
    """(`__all__`, `__getattr__`, `__dir__`) for `package`, from the imports under `if TYPE_CHECKING:` in its
    `__init__.py`, each run when its name is first used."""
    exports = _type_checking_imports(package, init_file)

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(exports[name]), name)

    def __dir__() -> list:
        return sorted(exports)

    return sorted(exports), __getattr__, __dir__
