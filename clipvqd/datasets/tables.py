"""The files a prepared real data set writes, with the columns the rest of the DAG reads.

Same contract as an embedded world (`clipvqd.worlds.generate`): manifests with `path` (relative to the
manifest's folder) and `sha256` first; `train_captions.csv` with `path` and `caption` in the order of
`train.csv` (read only by the paired control); `prompts.csv` with `prompt_id`, `prompt` and `ood` (0:
real data sets have no held-out attribute combinations). Extra columns (`image_id`, `source_split`)
trace each row back to the source data set.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence


def write_csv(path: str | Path, rows: Iterable[Mapping], columns: Sequence[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_json(path: str | Path, payload: Mapping) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def prompt_rows(prompts: Sequence[str], extra: Sequence[Mapping] | None = None) -> list[dict]:
    """prompt_id p0000.., the prompt text, ood 0, plus per-prompt extra columns."""
    rows = []
    for index, text in enumerate(prompts):
        text = " ".join(str(text).split())  # captions carry stray newlines and double spaces
        if not text:
            raise ValueError(f"prompt {index} is empty")
        row = {"prompt_id": f"p{index:04d}", "prompt": text, "ood": 0}
        if extra is not None:
            row.update(extra[index])
        rows.append(row)
    return rows


def relative(path: str | Path, folder: str | Path) -> str:
    return os.path.relpath(path, folder)
