"""The baselines do not depend on the method they are compared against: no module of clipvqd.lafite or
clipvqd.clip2latent imports clipvqd.diffusion or clipvqd.tokenizer, directly or through another clipvqd
module. Read from the source (ast), so the check also covers imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "clipvqd"
BASELINES = ("clipvqd.lafite", "clipvqd.clip2latent")
FORBIDDEN = ("clipvqd.diffusion", "clipvqd.tokenizer")


def _module_file(name: str) -> Path | None:
    """The source file of clipvqd module `name` (a package's __init__.py), or None if there is none."""
    relative = Path(*name.split("."))
    for candidate in (REPO / relative.with_suffix(".py"), REPO / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in `path`; `from a import b` also yields `a.b`, which
    is a module when b is a submodule. Relative imports are resolved against the file's package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def _baseline_files() -> list[Path]:
    files = []
    for package in BASELINES:
        files += sorted((REPO / Path(*package.split("."))).rglob("*.py"))
    return files


def test_the_resolver_finds_relative_and_absolute_imports():
    found = {module for _, module in imported_modules(PACKAGE / "diffusion" / "train.py")}
    assert "clipvqd.diffusion.transformer" in found  # from .transformer import ...
    assert "clipvqd.training" in found and "clipvqd.checkpoint" in found
    package_init = {module for _, module in imported_modules(PACKAGE / "lafite" / "__init__.py")}
    assert "clipvqd.lafite.train" in package_init


@pytest.mark.parametrize("path", _baseline_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_baselines_do_not_import_the_method(path):
    """Direct imports, then every clipvqd module reachable from them; a failure names the chain."""
    chains = {_module_name(path): [f"{path.relative_to(REPO)}"]}
    queue = [path]
    seen = {path}
    while queue:
        current = queue.pop()
        for line, module in imported_modules(current):
            if not module.startswith("clipvqd"):
                continue
            chain = chains[_module_name(current)] + [f"line {line}: {module}"]
            assert not _forbidden(module), " -> ".join(chain)
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py too.
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):
                target = _module_file(".".join(parts[:depth]))
                if target is not None and target not in seen:
                    seen.add(target)
                    via = chain if depth == len(parts) else chain + [f"runs {target.relative_to(REPO)}"]
                    chains[_module_name(target)] = via
                    queue.append(target)


def test_the_training_core_imports_no_model_code():
    """clipvqd.training is what every trainer shares: it imports nothing of clipvqd but itself."""
    for path in sorted((PACKAGE / "training").glob("*.py")):
        for line, module in imported_modules(path):
            if module.startswith("clipvqd"):
                assert module.startswith("clipvqd.training"), f"{path.relative_to(REPO)} line {line}: {module}"


def test_the_configuration_dataclasses_import_without_torch():
    """common.smk builds these while Snakemake reads the Snakefile (to check a run's settings before any
    job): importing them must not load torch or open_clip, which would slow every snakemake call."""
    import subprocess
    import sys

    modules = ("clipvqd.diffusion.model_config", "clipvqd.diffusion.train_config", "clipvqd.tokenizer.config",
               "clipvqd.lafite.config", "clipvqd.clip2latent.config", "clipvqd.clip.standin_config",
               "clipvqd.config_blocks", "clipvqd.worlds")
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
