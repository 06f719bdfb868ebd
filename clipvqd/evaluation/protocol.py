"""The protocol record, `reports/<run>/protocol.json`: how every number in `metrics.csv` was measured.

Each entry describes one measurement: which library and version, which feature extractor and the
sha256 of its weights, which sample set (content hash, count, resolution, prompt set, seeds, sampling
settings) against which reference set. An entry's id is a hash of its content, so rows measured the same
way point to the same entry, per-branch records merge without conflicts, and an id cannot silently come
to mean something else.

A measurement repeated on several training seeds is one entry (`combine_seed_entries`): what every seed
shares at the top, what differs (the sample sets' hashes, their seeds) under `by_seed`.

File layout: {"format": "clipvqd-protocol", "version": 2, "entries": {id: entry, ...}, "design": {...}}.
`design` (written by the report) describes the evaluation as a whole: the two evaluation sets, the seeds,
the bootstrap, the significance tests, the prompt table the numbers come from, and the judge's data.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from clipvqd.hashing import sha256_bytes

PROTOCOL_FORMAT = "clipvqd-protocol"
PROTOCOL_VERSION = 2

# Manifest columns that describe a sample rather than the settings it was drawn with.
SAMPLE_IDENTITY_COLUMNS = {"path", "sha256", "prompt_id", "prompt", "sample_index", "seed", "method", "variant"}

CLIPSCORE_DEFINITION = (
    "raw cosine similarity of L2-normalised CLIP text and image embeddings (not x100, not clipped)"
)


class ProtocolError(ValueError):
    pass


def _jsonable(value):
    """Plain JSON types (numpy scalars, tuples, Paths), with a stable representation for hashing."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"protocol values must be finite, got {value}")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ProtocolError(f"protocol value {value!r} of type {type(value).__name__} is not JSON")


def _canonical(entry: Mapping) -> str:
    return json.dumps(_jsonable(entry), sort_keys=True, separators=(",", ":"))


def protocol_id(entry: Mapping) -> str:
    kind = entry.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("a protocol entry needs a 'kind'")
    return f"{kind}-{sha256_bytes(_canonical(entry).encode())[:12]}"


def library_versions(*names: str) -> dict:
    """Installed versions of the named distributions (and always clipvqd, torch, numpy)."""
    versions = {}
    for name in ("clipvqd", "torch", "numpy", *names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def prompt_set_identity(frame: pd.DataFrame) -> dict:
    """Identity of the prompts a manifest was sampled from: hash of its (prompt_id, prompt) pairs."""
    pairs = sorted(set(zip(frame["prompt_id"].astype(str), frame["prompt"].astype(str))))
    text = "\n".join(f"{pid}\t{prompt}" for pid, prompt in pairs)
    return {"n_prompts": len(pairs), "sha256": sha256_bytes(text.encode())}


def seeds_summary(values: Iterable) -> dict:
    seeds = sorted({int(v) for v in values})
    if not seeds:
        return {"n_distinct": 0}
    summary = {"n_distinct": len(seeds), "min": seeds[0], "max": seeds[-1]}
    if len(seeds) <= 64:
        summary["values"] = seeds
    else:
        summary["sha256"] = sha256_bytes(",".join(map(str, seeds)).encode())
    return summary


def _scalar(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
    return value


def sampling_description(frame: pd.DataFrame) -> dict:
    """What a sample manifest says about how it was drawn: method, variant, prompt set, seeds, samples
    per prompt, and the sampling settings (every extra column with one value, e.g. alpha, s, r, steps)."""
    description: dict = {"n_samples": int(len(frame))}
    for column in ("method", "variant"):
        if column in frame.columns:
            values = sorted(set(frame[column].astype(str)))
            description[column] = values[0] if len(values) == 1 else values
    if {"prompt_id", "prompt"} <= set(frame.columns):
        description["prompt_set"] = prompt_set_identity(frame)
        per_prompt = frame.groupby("prompt_id").size()
        description["samples_per_prompt"] = {"min": int(per_prompt.min()), "max": int(per_prompt.max())}
    if "seed" in frame.columns:
        description["seeds"] = seeds_summary(frame["seed"])
    settings, varying = {}, []
    for column in sorted(set(frame.columns) - SAMPLE_IDENTITY_COLUMNS):
        # A blank cell means "not applicable to this method" (e.g. no alpha for LAFITE), not a value.
        present = frame[column][~(frame[column].isna() | (frame[column].astype(str).str.strip() == ""))]
        values = present.unique()
        if len(values) == 1 and len(present) == len(frame):
            settings[column] = _scalar(values[0])
        elif len(values) >= 1:
            varying.append(column)
    description["settings"] = settings
    if varying:
        description["varying_columns"] = varying
    return description


def make_entry(kind: str, **fields) -> dict:
    """A protocol entry of any kind (e.g. the attribute oracle's), with the versions of clipvqd and torch."""
    entry = {"kind": kind, **fields}
    entry.setdefault("versions", library_versions())
    return _jsonable(entry)


def combine_seed_entries(entries_by_seed: Mapping[int, Mapping], **shared) -> dict:
    """One entry for a measurement made on each training seed: fields equal on every seed stay at the top,
    the others move to `by_seed` ({seed: {field: value}}); `shared` adds fields (e.g. the interval)."""
    if not entries_by_seed:
        raise ProtocolError("combine_seed_entries needs at least one seed's entry")
    entries = {int(seed): _jsonable(entry) for seed, entry in entries_by_seed.items()}
    keys = sorted(set().union(*(entry.keys() for entry in entries.values())))
    combined, by_seed = {}, {str(seed): {} for seed in entries}
    for key in keys:
        values = [entry.get(key) for entry in entries.values()]
        if all(_canonical({"v": v}) == _canonical({"v": values[0]}) for v in values):
            combined[key] = values[0]
        else:
            for seed, entry in entries.items():
                by_seed[str(seed)][key] = entry.get(key)
    if "kind" not in combined:
        raise ProtocolError(f"entries of different kinds cannot be combined: {[e.get('kind') for e in entries.values()]}")
    combined["seeds"] = sorted(entries)
    if any(by_seed.values()):
        combined["by_seed"] = by_seed
    combined.update(_jsonable(dict(shared)))
    return combined


def image_metrics_entry(*, extractor, generated, reference, result: Mapping, sample_manifest: str | Path | None = None,
                        reference_name: str | None = None, cross_check: Mapping | None = None) -> dict:
    """The entry behind one method's fid/kid/precision/recall rows.

    `extractor` is a FeatureExtractorSpec, `generated`/`reference` ImageSets, `result` what
    `image_set_metrics` returned, `cross_check` what `cleanfid_cross_check` returned (if run).
    """
    from clipvqd.manifest import read_manifest

    generated_description = generated.describe()
    if sample_manifest is not None:
        generated_description["sampling"] = sampling_description(read_manifest(sample_manifest, verify=False))
    reference_description = reference.describe()
    if reference_name:
        reference_description["name"] = reference_name
    settings = dict(result["settings"])
    return make_entry(
        "image_set_metrics",
        metrics=["fid", "kid", "precision", "recall"],
        library={"name": "torch-fidelity", "version": importlib.metadata.version("torch-fidelity")},
        mode=(
            "torch-fidelity feature-level functions on uint8 images: FID (Frechet distance, eigenvalue form), "
            f"KID (cubic polynomial kernel, {settings['kid_subsets']} subsets of {settings['kid_subset_size']}"
            + (", each the whole of both sets, so one stands for the "
               f"{settings['kid_subsets_requested']} requested" if "kid_subsets_requested" in settings else "")
            + "), "
            f"precision/recall (k={settings['prc_neighborhood']} nearest neighbours); input 1 generated, "
            "input 2 reference"
        ),
        feature_extractor=extractor.describe(),
        approximation=extractor.approximation,
        settings=settings,
        generated=generated_description,
        reference=reference_description,
        resolution=generated_description["resolution"],
        cross_check=dict(cross_check) if cross_check else None,
        versions=library_versions("torch-fidelity", "clean-fid"),
    )


def clipscore_entry(*, clip_label: str, clip_identity: str, role: str, scores: pd.DataFrame,
                    best_of: int | None = 16, sample_manifest: str | Path | None = None,
                    input_resolution: int | None = None) -> dict:
    """The entry behind one method's CLIPscore rows (role 'generator' or 'judge')."""
    from clipvqd.hashing import sha256_of_hashes

    if role not in ("generator", "judge"):
        raise ProtocolError(f"clipscore role must be 'generator' or 'judge', got {role!r}")
    fields = dict(
        definition=CLIPSCORE_DEFINITION,
        role=role,
        note=("the judge CLIP conditioned no generator" if role == "judge"
              else "scored by the CLIP that conditioned the generator: self-scoring can inflate it"),
        clip={"label": clip_label, "weights_sha256": clip_identity},
        preprocessing=(f"uint8 RGB, bicubic-antialiased resize to {input_resolution}x{input_resolution} when the "
                       "size differs" if input_resolution else "uint8 RGB at the images' own resolution"),
        best_of=best_of if role == "generator" else None,
        sampling=sampling_description(scores.drop(columns=["clipscore", "rank", "chosen"], errors="ignore")),
    )
    if "sha256" in scores.columns:
        fields["samples_content_sha256"] = sha256_of_hashes(scores["sha256"].astype(str))
    if sample_manifest is not None:
        fields["sample_manifest"] = str(sample_manifest)
    return make_entry("clipscore", **fields)


class ProtocolRecord:
    """An ordered mapping id -> entry, read from and written to protocol.json, plus the run's `design`."""

    def __init__(self, entries: Mapping[str, Mapping] | None = None, design: Mapping | None = None,
                 files: Mapping[str, Mapping] | None = None):
        self.entries: dict[str, dict] = {}
        self.design: dict | None = _jsonable(dict(design)) if design is not None else None
        # A branch's record lists the other files its metrics job wrote for the report ({role: {"path": relative
        # to the record's folder, "sha256": ...}}), so the report reads exactly those files; a merged record has none.
        self.files: dict | None = _jsonable(dict(files)) if files is not None else None
        for entry_id, entry in (entries or {}).items():
            self._insert(entry_id, dict(entry), source="given entries")

    def _insert(self, entry_id: str, entry: dict, source: str) -> None:
        expected = protocol_id(entry)
        if entry_id != expected:
            raise ProtocolError(f"{source}: entry {entry_id!r} does not match its content (its id would be {expected})")
        self.entries[entry_id] = entry

    def add(self, entry: Mapping) -> str:
        """Add an entry (built by make_entry & co.) and return its id, the value for `metrics.csv`."""
        entry = _jsonable(entry)
        entry_id = protocol_id(entry)
        self.entries[entry_id] = entry
        return entry_id

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self.entries

    def __getitem__(self, entry_id: str) -> dict:
        try:
            return self.entries[entry_id]
        except KeyError:
            raise ProtocolError(f"protocol has no entry {entry_id!r}") from None

    def ids(self) -> set[str]:
        return set(self.entries)

    def to_json(self) -> dict:
        data = {"format": PROTOCOL_FORMAT, "version": PROTOCOL_VERSION,
                "entries": {key: self.entries[key] for key in sorted(self.entries)}}
        if self.design is not None:
            data["design"] = self.design
        if self.files is not None:
            data["files"] = self.files
        return data

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> "ProtocolRecord":
        path = Path(path)
        if not path.is_file():
            raise ProtocolError(f"protocol file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ProtocolError(f"protocol file {path} is not JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != PROTOCOL_FORMAT:
            raise ProtocolError(f"protocol file {path}: 'format' must be {PROTOCOL_FORMAT!r}")
        if data.get("version") != PROTOCOL_VERSION:
            raise ProtocolError(f"protocol file {path}: version {data.get('version')!r}, expected {PROTOCOL_VERSION}")
        entries = data.get("entries")
        if not isinstance(entries, dict):
            raise ProtocolError(f"protocol file {path}: 'entries' must be an object")
        design = data.get("design")
        if design is not None and not isinstance(design, dict):
            raise ProtocolError(f"protocol file {path}: 'design' must be an object")
        files = data.get("files")
        if files is not None and not (isinstance(files, dict) and all(
                isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
                for f in files.values())):
            raise ProtocolError(f"protocol file {path}: 'files' must map a role to {{path, sha256}}")
        record = cls(design=design, files=files)
        for entry_id, entry in entries.items():
            record._insert(entry_id, entry, source=str(path))
        return record

    @classmethod
    def merge(cls, paths: Iterable[str | Path]) -> "ProtocolRecord":
        """Union of per-branch records (ids are content hashes, so equal ids hold equal entries)."""
        record = cls()
        for path in paths:
            for entry_id, entry in cls.read(path).entries.items():
                record.entries[entry_id] = entry
        return record


def merge_protocol_files(paths: Iterable[str | Path], out_path: str | Path,
                         design: Mapping | None = None) -> ProtocolRecord:
    record = ProtocolRecord.merge(paths)
    if design is not None:
        record.design = _jsonable(dict(design))
    record.write(out_path)
    return record
