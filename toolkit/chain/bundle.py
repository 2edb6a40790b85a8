"""The assessment bundle: its manifest (versioned; JSON Schema from ``PipelineManifest``), report.md and app code.

```
bundles/<name>/
  manifest.json            schema pipeline-1.1: input, components, chain (steps = the glue contract, glue_ops), outputs,
                           variants (device chains and their gates), fused, verdict, app_code, files (every other
                           file with its sha256; new in pipeline-1.1), tools, recipe
  manifest.schema.json     the JSON Schema the manifest follows
  report.md
  components/<name>/       each component's own bundle (manifest, report, artifacts)
  fused/                   one graph of the whole chain per fused target
  app/                     Swift and Kotlin that load the artifacts and apply the glue as the manifest says
```
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PIPELINE_SCHEMA_VERSION = "pipeline-1.1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentEntry(_Strict):
    name: str
    bundle: str  # folder, relative to the pipeline bundle
    manifest_sha256: str
    model: str
    task: str
    input_size: list[int]
    labels: list[str]
    outputs: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]  # key, path (relative to the pipeline bundle), format, precision, sha256, passed
    passed: bool
    complete: bool
    problem: str | None = None  # why its own gate failed or targets are missing


class ChainEntry(_Strict):
    steps: list[dict[str, Any]]  # in order; each: id, inputs, outputs, run | op + params (+ resolved), fusable
    values: dict[str, dict[str, Any]]  # every value reference: kind, shape, dtype, names, unit
    glue_ops: list[dict[str, Any]]  # the definition of every glue op (toolkit.glue)
    fusable: bool


class OutputEntry(_Strict):
    name: str
    source: str = Field(alias="from")  # the value reference
    description: str
    unit: str
    kind: str
    shape: list[int]
    dtype: str
    names: list[str] = []
    judge: str | None = None
    truth: str | None = None
    flag: str | None = None
    flag_below: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PipelineManifest(_Strict):
    schema_version: Literal["pipeline-1.0", "pipeline-1.1"] = PIPELINE_SCHEMA_VERSION  # 1.0: no files
    kind: Literal["pipeline"] = "pipeline"
    bundle: str
    version: str
    description: str
    created_utc: str
    input: dict[str, Any]  # size, fit, the picture's contract
    components: list[ComponentEntry]
    chain: ChainEntry
    outputs: list[OutputEntry]
    overlay: list[str]  # value references `skinkit run --overlay` draws on the photo
    variants: list[dict[str, Any]]  # key, tier, artifacts, components_passed, verification, loss_by_component, seconds
    fused: list[dict[str, Any]]  # key, path, format, precision, sha256, size_bytes, outputs, verification; or key + error
    evaluation: dict[str, Any]
    verdict: dict[str, Any]
    app_code: list[dict[str, Any]]
    files: dict[str, str] = {}  # every file not listed above (report.md, manifest.schema.json): path → sha256
    tools: dict[str, str]
    recipe: dict[str, Any]  # path, sha256, resolved


def schema() -> dict:
    """The JSON Schema of an assessment bundle's manifest."""
    out = PipelineManifest.model_json_schema()
    out["$id"] = f"https://skinkit.dev/schemas/{PIPELINE_SCHEMA_VERSION}.json"
    out["title"] = "skinkit assessment bundle manifest"
    return out


def write_bundle(staging: Path, recipe, recipe_path: Path, graph, components: dict, comp_results: dict, variants: list[dict],
                 fused: list[dict], data, *, seconds: float) -> dict:
    from toolkit.bundle.manifest import other_files
    from toolkit.bundle.stage import tool_versions
    from toolkit.chain.graph import overlay_values
    from toolkit.chain.report import render
    from toolkit.context import recipe_record
    from toolkit.convert.base import artifact_key, file_sha256
    from toolkit.glue import table

    entries = []
    for name, res in comp_results.items():
        m, spec = res["manifest"], components[name].compressed.spec
        arts = [{"key": artifact_key(a, m["model"]["name"]), "path": f"components/{name}/{a['path']}", "format": a["format"],
                 "precision": a["precision"], "sha256": a["sha256"], "passed": a["verification"]["passed"]} for a in m["artifacts"]]
        entries.append(ComponentEntry(
            name=name, bundle=f"components/{name}", manifest_sha256=file_sha256(staging / "components" / name / "manifest.json"),
            model=m["model"]["name"], task=m["model"]["task"], input_size=list(spec.input_size), labels=m["labels"],
            outputs=m["outputs"], artifacts=arts, passed=bool(m["verdict"]["passed"]), complete=bool(m["verdict"]["complete"]),
            problem=res["problem"]))
    outputs = [OutputEntry(name=o.name, source=o.source, description=o.description,
                           unit=o.unit if o.unit is not None else graph.values[o.source].unit,
                           **{k: v for k, v in graph.values[o.source].describe().items() if k != "unit"},
                           judge=o.judge, truth=o.truth, flag=o.flag, flag_below=o.flag_below) for o in recipe.outputs]
    h, w = recipe.input.size
    comps_ok = all(e.passed for e in entries)
    chains_ok = all(v["verification"]["passed"] for v in variants)
    fused_ok = all(f.get("verification", {}).get("passed", False) for f in fused)
    manifest = PipelineManifest(
        bundle=recipe.name, version=recipe.version, description=recipe.description,
        created_utc=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        input={"size": [h, w], "fit": recipe.input.fit, "shape": [1, h, w, 3], "layout": "NHWC", "dtype": "float32",
               "range": [0, 255], "color_order": "RGB",
               "fit_definition": "center_crop: the largest centred crop of aspect w/h (x0 = (W - cw) // 2, y0 = (H - ch) // 2), "
                                 "resized with area averaging when shrinking, bilinear when enlarging; stretch: the whole photo resized"},
        components=entries,
        chain={"steps": [s.describe() for s in graph.steps], "values": {k: v.describe() for k, v in graph.values.items()},
               "glue_ops": table(), "fusable": graph.fusable},
        outputs=outputs, overlay=overlay_values(recipe, graph), variants=variants, fused=fused,
        evaluation={"source": "synthetic", "split": "test", "n": len(data), "seed": recipe.evaluation.seed,
                    "bootstrap": recipe.evaluation.bootstrap, "noninferiority": recipe.evaluation.noninferiority,
                    "groups": {g: data.groups.count(g) for g in dict.fromkeys(data.groups)}, "seconds": round(seconds, 1)},
        verdict={"passed": comps_ok and chains_ok and fused_ok, "components_passed": comps_ok, "chains_passed": chains_ok,
                 "fused_passed": fused_ok, "components": len(entries), "variants": len(variants), "fused": len(fused)},
        app_code=[], tools=tool_versions(),
        recipe={"path": recipe_record(recipe_path, staging), "sha256": recipe.sha256(), "resolved": json.loads(recipe.canonical_json())},
    )
    data_out = manifest.model_dump(mode="json", by_alias=True)
    data_out["app_code"] = _app_code(staging, data_out, variants)
    (staging / "manifest.schema.json").write_text(json.dumps(schema(), indent=2) + "\n")
    (staging / "report.md").write_text(render(data_out))
    listed = {e.bundle for e in entries} | {f["path"] for f in fused if "path" in f} | {a["path"] for a in data_out["app_code"]}
    data_out["files"] = other_files(staging, listed)  # written last: it lists the others
    PipelineManifest.model_validate(data_out)
    (staging / "manifest.json").write_text(json.dumps(data_out, indent=2) + "\n")
    return data_out


def _app_code(staging: Path, manifest: dict, variants: list[dict]) -> list[dict]:
    """Swift and Kotlin for the first passing variant (else the first), recorded with their sha256."""
    from toolkit.chain.appcode import write_app_code
    from toolkit.convert.base import file_sha256

    if not variants:
        return []
    chosen = next((v for v in variants if v["verification"]["passed"]), variants[0])
    paths = write_app_code(manifest, staging / "app", variant=chosen["key"])
    return [{"path": p.relative_to(staging).as_posix(), "language": {".swift": "swift", ".kt": "kotlin"}.get(p.suffix, p.suffix),
             "variant": chosen["key"], "sha256": file_sha256(p)} for p in paths]
