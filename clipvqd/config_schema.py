"""The workflow's config against its JSON schema, with errors a person can act on.

Snakemake's own `validate` reports a bad key by printing the schema block and the config around it
(thousands of lines for a top-level key). `validate_config` gives at most a few lines per error: the key,
where it sits in the config (`data.world`), what is wrong, and for an unknown key the closest valid one.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

__all__ = ["ConfigSchemaError", "describe_errors", "validate_config"]

MAX_ERRORS = 3


class ConfigSchemaError(ValueError):
    """The config breaks the schema; the message names each key at fault."""


def _where(path) -> str:
    parts = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


def _unknown_keys(error) -> list[str]:
    allowed = set(error.schema.get("properties", {}))
    patterns = error.schema.get("patternProperties", {})
    if not isinstance(error.instance, dict):
        return []
    return sorted(key for key in error.instance if key not in allowed
                  and not any(re.search(pattern, key) for pattern in patterns))


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _describe(error) -> list[str]:
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        valid = sorted(error.schema.get("properties", {}))
        lines = []
        for key in _unknown_keys(error):
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
            place = f"in {where}" if error.absolute_path else "at the top level"
            lines.append(f"unknown key '{key}' {place}{hint}")
        if lines:
            return lines
    if (error.validator == "type" and "boolean" in _as_list(error.validator_value) and isinstance(error.instance, str)
            and error.instance.lower() in ("true", "false", "yes", "no", "on", "off")):
        # Snakemake's --config reads Python literals, not YAML: 'false' stays a string there.
        spelled = "True" if error.instance.lower() in ("true", "yes", "on") else "False"
        return [f"{where}: '{error.instance}' is a string, not a boolean; write {spelled} "
                f"(on the command line, --config reads Python's True and False)"]
    value = repr(error.instance)
    if len(value) > 80:
        value = value[:77] + "..."
    return [f"{where}: {error.message if len(error.message) <= 160 else value + ' is not valid here'}"]


def describe_errors(config: dict, schema: dict) -> list[str]:
    """One or a few lines per schema error of `config` (at most MAX_ERRORS errors), deepest keys first."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: (-len(e.absolute_path), list(map(str, e.absolute_path))))
    lines = []
    for error in errors[:MAX_ERRORS]:
        lines += _describe(error)
    if len(errors) > MAX_ERRORS:
        lines.append(f"... and {len(errors) - MAX_ERRORS} more")
    return lines


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Fill `config` in place with the schema's defaults (Snakemake's `validate`); on an error, raise
    ConfigSchemaError with a short message naming each bad key, where it is and, for a misspelt key, the
    closest valid one."""
    import yaml
    from snakemake.utils import validate

    try:
        validate(config, str(schema_path))
    except Exception as error:  # Snakemake wraps jsonschema's ValidationError in a WorkflowError
        schema: dict[str, Any] = yaml.safe_load(Path(schema_path).read_text())
        lines = describe_errors(config, schema)
        if not lines:
            raise
        raise ConfigSchemaError("invalid config (schema " + Path(schema_path).name + "):\n  "
                                + "\n  ".join(lines)) from None
    return config
