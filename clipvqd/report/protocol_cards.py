"""The report's protocol cards: the few facts of a protocol.json entry a reader needs, in words (the full entry
is shown as JSON beside them)."""

from __future__ import annotations

from typing import Mapping


def format_any(value) -> str:
    """A protocol value in words: floats to 4 significant digits, lists and mappings flattened."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_any(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={format_any(v)}" for k, v in value.items())
    return str(value)


def protocol_facts(entry: Mapping) -> list[tuple[str, str]]:
    """The few lines of an entry a reader needs, in words; the full entry is shown as JSON beside them."""
    facts: list[tuple[str, str]] = []

    def add(label: str, value) -> None:
        if value not in (None, "", [], {}):
            facts.append((label, format_any(value)))

    library = entry.get("library") or {}
    if library:
        add("library", f"{library.get('name')} {library.get('version')}")
    add("metrics", entry.get("metrics"))
    add("definition", entry.get("definition"))
    extractor = entry.get("feature_extractor") or {}
    if extractor:
        add("feature extractor", f"{extractor.get('description')} [{extractor.get('name')}], layer {extractor.get('feature_layer')}")
        add("extractor weights sha256", extractor.get("weights_sha256"))
        add("preprocessing", extractor.get("preprocessing"))
    add("approximation", entry.get("approximation"))
    add("mode", entry.get("mode"))
    clip = entry.get("clip") or {}
    if clip:
        add("CLIP", f"{clip.get('label')} (weights sha256 {clip.get('weights_sha256')})")
        if not extractor:
            add("preprocessing", entry.get("preprocessing"))
    add("role", entry.get("note"))
    add("best of N", entry.get("best_of"))
    generated = entry.get("generated") or {}
    sampling = entry.get("sampling") or generated.get("sampling") or {}
    if generated:
        add("generated set", f"{generated.get('n')} images, {generated.get('resolution', ['?'])[0]}px, "
                             f"content sha256 {str(generated.get('content_sha256'))[:16]}…")
    reference = entry.get("reference") or {}
    if reference:
        add("reference set", f"{reference.get('name') or reference.get('label')}: {reference.get('n')} images, "
                             f"content sha256 {str(reference.get('content_sha256'))[:16]}…")
    add("resolution", entry.get("resolution"))
    if sampling:
        add("samples", sampling.get("n_samples"))
        prompt_set = sampling.get("prompt_set") or {}
        if prompt_set:
            add("prompt set", f"{prompt_set.get('n_prompts')} prompts, sha256 {str(prompt_set.get('sha256'))[:16]}…")
        add("samples per prompt", sampling.get("samples_per_prompt"))
        add("seeds", sampling.get("seeds"))
        add("sampling settings", sampling.get("settings"))
    add("metric settings", entry.get("settings"))
    cross = entry.get("cross_check") or {}
    if cross:
        outcome = (f"FID = {cross['fid']:.4g}" if cross.get("fid") is not None
                   else cross.get("error") or "no value")
        if cross.get("relative_difference") is not None:
            outcome += f", relative difference to torch-fidelity {cross['relative_difference']:.2g}"
        add("cross-check", f"{cross.get('library')} {cross.get('version')}: {outcome} (resize: {cross.get('resize')})")
    versions = entry.get("versions") or {}
    add("versions", versions)
    # Entries of other kinds (e.g. the attribute oracle's): show their remaining plain fields.
    shown = {"kind", "library", "metrics", "definition", "feature_extractor", "approximation", "mode", "clip",
             "note", "best_of", "generated", "sampling", "reference", "resolution", "settings", "cross_check",
             "versions", "preprocessing"}
    for key, value in entry.items():
        if key not in shown:
            add(key.replace("_", " "), value)
    return facts
