"""The conda environments of `--use-conda` (envs/*.yaml), checked without conda (it cannot run here):

- each file parses and pins every package to the version pyproject.toml pins; the project package is not
  installed into them: every rule's command runs the workflow's own source (PYTHONPATH set by the command,
  since Snakemake keeps PYTHONPATH out of conda jobs);
- every rule names one of them;
- pyproject.toml declares every distribution the package imports, and imports (or otherwise uses) every one
  it declares; its licence is the LICENSE file's;
- each family's environment holds every distribution that the package code its rules run imports
  (found by walking the imports of the package source, function-level ones included).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO

ENVS = REPO / "envs"
FAMILIES = ("data", "clip", "train", "evaluation", "report")

# The command modules of each family's rules (every handler's imports count, function-level ones included;
# "module:f" counts only handler f, for a group whose commands run in two families), plus library modules
# the family's rules reach by other routes. Every command also goes through the CLI assembler, which
# imports only the group it runs, and resolves --device with torch.
ENTRY_MODULES = {
    "data": ["clipvqd.worlds.cli", "clipvqd.datasets.cli", "clipvqd.worlds.generate", "clipvqd.datasets"],
    "clip": ["clipvqd.clip.cli", "clipvqd.clip.sources", "clipvqd.clip.standin", "clipvqd.clip.evaluate",
             "clipvqd.clip.embed", "clipvqd.clip.encoder"],
    "train": ["clipvqd.oracle_cli", "clipvqd.tokenizer.cli", "clipvqd.diffusion.cli", "clipvqd.lafite.cli",
              "clipvqd.clip2latent.cli", "clipvqd.sampling_cli", "clipvqd.sampling", "clipvqd.oracle",
              "clipvqd.tokenizer", "clipvqd.manifest", "clipvqd.diffusion", "clipvqd.diffusion.generate",
              "clipvqd.lafite", "clipvqd.clip.encoder", "clipvqd.clip.embed", "clipvqd.samples", "clipvqd.clip2latent",
              "clipvqd.machine_speed_cli"],
    "evaluation": ["clipvqd.evaluation.cli:cmd_metrics,register", "clipvqd.evaluation", "clipvqd.evaluation.features",
                   "clipvqd.evaluation.protocol", "clipvqd.evaluation.table", "clipvqd.clip.encoder", "clipvqd.oracle",
                   "clipvqd.manifest"],
    "report": ["clipvqd.evaluation.cli:cmd_report,register", "clipvqd.evaluation", "clipvqd.report"],
}
COMMON_ENTRIES = ["clipvqd.cli", "clipvqd.cli_args", "clipvqd.device"]


def _requirement_name(spec: str) -> str:
    return re.split(r"[=<>!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_requirement_name(spec): spec.strip() for spec in project["dependencies"]}


def _env(name: str) -> dict:
    return yaml.safe_load((ENVS / f"{name}.yaml").read_text())


def _pip_specs(env: dict) -> list[str]:
    pip = [entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict) and "pip" in entry]
    assert len(pip) == 1, "one pip section per environment"
    return pip[0]


def test_every_environment_parses_and_pins_what_pyproject_pins():
    pins = _pyproject_pins()
    found = sorted(path.stem for path in ENVS.glob("*.yaml"))
    assert found == sorted(FAMILIES), f"envs/ holds {found}; this test knows {sorted(FAMILIES)}"
    for family in FAMILIES:
        env = _env(family)
        assert env["channels"][0] == "conda-forge" and "nodefaults" in env["channels"], family
        conda = [d for d in env["dependencies"] if isinstance(d, str)]
        # pyproject.toml: requires-python = ">=3.11,<3.12"
        assert "python=3.11" in conda, family
        assert "pip" in conda, family
        for spec in _pip_specs(env):
            name = _requirement_name(spec)
            assert name in pins, f"envs/{family}.yaml: {spec!r} is not a dependency in pyproject.toml"
            assert spec.replace(" ", "") == pins[name].replace(" ", ""), (
                f"envs/{family}.yaml pins {spec!r} but pyproject.toml pins {pins[name]!r}")


def test_every_command_runs_the_workflows_own_source():
    """No environment installs the package (a module's source may be read-only, a conda prefix may be shared
    between checkouts): every rule runs `python -m clipvqd` through clipvqd_command or clipvqd_trainer, which
    put the workflow's own source (CLIPVQD_SOURCE, set from the Snakefile's folder) first on PYTHONPATH."""
    assert not list(ENVS.glob("*.post-deploy.sh"))
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert 'os.environ["CLIPVQD_SOURCE"] = str(WORKFLOW_ROOT)' in common
    assert re.search(r"""WITH_SOURCE = 'export PYTHONPATH="\$CLIPVQD_SOURCE""", common)
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        if smk.name != "common.smk":
            assert "python -m clipvqd" not in text and "-m clipvqd" not in text, smk
        shells = re.findall(r"^\s+shell:\n\s+(\S+)", text, re.MULTILINE)
        assert all(s.startswith(("clipvqd_command(", "clipvqd_trainer(")) for s in shells), (smk, shells)


def test_every_rule_uses_one_of_the_environments():
    declared = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        rule = None
        lines = smk.read_text().splitlines()
        for number, line in enumerate(lines):
            match = re.match(r"\s*rule (\w+):", line)
            if match:
                rule = match.group(1)
            if line.strip() == "conda:" and rule:
                declared[rule] = lines[number + 1].strip().rstrip(",")
    assert len(declared) >= 20, declared
    names = {f"ENVS[{family!r}]" for family in FAMILIES} | {f'ENVS["{family}"]' for family in FAMILIES}
    wrong = {rule: value for rule, value in declared.items() if value not in names}
    assert not wrong, f"rules whose conda: is not ENVS[<family>] (families {FAMILIES}): {wrong}"
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    table = re.search(r"^ENVS = .*$", common, re.MULTILINE)
    assert table and "../../envs/{family}.yaml" in table.group(0), "common.smk: ENVS maps a family to envs/<family>.yaml"
    for family in FAMILIES:
        assert f'"{family}"' in table.group(0), family


# ---- the imports of the package, per family ---------------------------------------------------------------

def _module_file(module: str) -> Path | None:
    path = REPO / Path(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imports(entry: str) -> tuple[set[str], set[str]]:
    """(package modules, top-level outside modules) that `entry`'s source imports anywhere. An entry
    "module:f,g" counts the module level and the functions f and g only (the handlers a family runs)."""
    module, _, functions = entry.partition(":")
    source = _module_file(module)
    inner, outer = set(), set()
    if source is None:
        return inner, outer
    package = module if source.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(source.read_text())
    if functions:
        keep = set(functions.split(","))
        tree.body = [node for node in tree.body if not isinstance(node, ast.FunctionDef) or node.name in keep]
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] == "clipvqd":
                if _module_file(name) is not None:
                    inner.add(name)
            else:
                outer.add(name.split(".")[0])
    return inner, outer


def _outside_modules(entries: list[str]) -> set[str]:
    seen, todo, outer = set(), list(entries), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        inner, found = _imports(module)
        outer |= found
        todo.extend(inner - seen)
        # a submodule import runs its parents' __init__ too
        parts = module.partition(":")[0].split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) not in seen)
    return outer


def _distributions(modules: set[str]) -> set[str]:
    owners = importlib.metadata.packages_distributions()
    found = set()
    for module in modules:
        if module in sys.stdlib_module_names or module == "__future__":
            continue
        for distribution in owners.get(module, [module]):
            found.add(distribution.lower().replace("_", "-"))
    return found


def _installed_closure(names: set[str]) -> set[str]:
    """`names` plus everything they require (from the installed metadata): what pip installs with them."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(_requirement_name(r) for r in requires if "extra ==" not in r)
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_each_environment_has_what_its_rules_import(family):
    needed = _distributions(_outside_modules(ENTRY_MODULES[family] + COMMON_ENTRIES))
    declared = {_requirement_name(spec) for spec in _pip_specs(_env(family))}
    missing = needed - _installed_closure(declared)
    assert not missing, (f"envs/{family}.yaml lacks {sorted(missing)}, which the package code of its rules "
                         f"imports (entry modules {ENTRY_MODULES[family]})")


# Command groups that no rule runs, so no rule family's environment needs them, each with its reason.
HOST_GROUPS = {"cost": "`cost predict` is run by a person beside Snakemake (it calls `snakemake -n`), never by a rule"}


def test_every_command_group_belongs_to_a_family():
    from clipvqd.cli import GROUPS

    listed = {entry.partition(":")[0] for entries in ENTRY_MODULES.values() for entry in entries}
    missing = {group: module for group, (module, _) in GROUPS.items() if module not in listed and group not in HOST_GROUPS}
    assert not missing, f"command groups whose module no family's ENTRY_MODULES lists: {missing}"


# ---- pyproject.toml: what the package imports, what it declares -------------------------------------------

# Declared without a direct import in clipvqd/, each for a stated reason.
DECLARED_WITHOUT_IMPORT = {
    "snakemake-executor-plugin-slurm": "profiles/slurm (executor: slurm)",
}


def test_pyproject_declares_every_imported_distribution_and_nothing_unused():
    """Every third-party distribution imported anywhere in clipvqd/ (function-level imports included) is a
    dependency in pyproject.toml, and every dependency is imported (or listed above with its use)."""
    modules = set()
    for source in (REPO / "clipvqd").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules.add(node.module.split(".")[0])
    imported = _distributions(modules - {"clipvqd"})
    declared = set(_pyproject_pins())
    assert not imported - declared, f"imported but not declared in pyproject.toml: {sorted(imported - declared)}"
    unused = declared - imported - set(DECLARED_WITHOUT_IMPORT)
    assert not unused, f"declared in pyproject.toml but never imported by clipvqd/: {sorted(unused)}"


def test_licence_file_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
