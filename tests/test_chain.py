"""Assessment bundles end to end: a two-model chain exported, each component gated, the device chain and the
fused graph judged against the float chain, the manifest following its published schema, and `skinkit run`
on photos (any size, EXIF-rotated, not a photo at all)."""

import json

import cv2
import numpy as np
import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.chain.recipe import load_chain_recipe
from toolkit.errors import RecipeError
from toolkit.glue import GlueError, Value

CHAIN = """
name: gated_test
description: acne grade on the skin a segmenter found
input: {size: 224}
components:
  skin:
    model: {name: skin_segmenter}
    targets: [{format: tflite, precision: fp32}]
    evaluation: {n: 16, bootstrap: 100}
    benchmark: {enabled: false}
  acne:
    model: {name: acne_mobilenetv2}
    targets: [{format: tflite, precision: fp32}]
    evaluation: {n: 16, bootstrap: 100}
    benchmark: {enabled: false}
chain:
  - {id: skin, run: skin}
  - {id: skin_labels, op: argmax, inputs: {x: skin.logits}}
  - {id: skin_mask, op: class_mask, inputs: {x: skin_labels}, class: skin}
  - {id: coverage, op: coverage, inputs: {x: skin_mask}}
  - {id: gated, op: apply_mask, inputs: {image: image, mask: skin_mask}, fill: 0}
  - {id: acne, run: acne, input: gated}
outputs:
  - {name: acne_grade, from: acne.logits, judge: classification, truth: acne_grade, max_drop: 0.01, min_agreement: 0.99}
  - {name: skin_mask, from: skin_mask, judge: segmentation, truth: skin_mask, max_drop: 0.002}
  - {name: skin_coverage, from: coverage, flag_below: 0.05, flag: low_skin_coverage}
fused: [{format: tflite, precision: fp32}]
evaluation: {n: 24, bootstrap: 100}
"""


@pytest.fixture(scope="module")
def chain_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    recipe = write_recipe(tmp / "gated.yaml", CHAIN)
    result = run_cli("export", str(recipe), "--out", str(tmp / "bundles"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp / "bundles" / "gated_test"


def test_export_gates_components_device_chain_and_fused_graph(chain_bundle):
    m = json.loads((chain_bundle / "manifest.json").read_text())
    assert m["schema_version"] == "pipeline-1.1" and m["verdict"]["passed"] is True
    assert [c["name"] for c in m["components"]] == ["skin", "acne"] and all(c["passed"] for c in m["components"])
    assert (chain_bundle / "components" / "skin" / "manifest.json").is_file()
    [variant] = m["variants"]
    assert variant["key"] == "tflite_fp32" and variant["tier"] == "fp32"
    out = variant["verification"]["outputs"]
    # fp32 artifacts through LiteRT: the chain's decisions are the float chain's
    assert out["acne_grade"]["metrics"]["agreement"]["artifact"]["value"] == 1.0
    assert out["skin_mask"]["metrics"]["miou"]["drop"]["value"] == pytest.approx(0.0, abs=1e-4)
    assert out["acne_grade"]["numerics"]["max_abs"] < 1e-3
    assert sum(g["n"] for g in out["acne_grade"]["groups"].values()) == 24
    assert set(variant["loss_by_component"]) == {"skin", "acne"}
    [fused] = m["fused"]
    assert fused["path"].startswith("fused/") and (chain_bundle / fused["path"]).is_file()
    assert fused["verification"]["passed"] and [o["name"] for o in fused["outputs"]] == ["acne_grade", "skin_mask", "skin_coverage"]
    # the glue contract an app implements: steps in order, resolved class index, op definitions
    steps = m["chain"]["steps"]
    assert [s["id"] for s in steps] == ["skin", "skin_labels", "skin_mask", "coverage", "gated", "acne"]
    assert steps[2]["resolved"] == {"index": 1} and steps[4]["params"] == {"fill": 0}
    assert {o["op"] for o in m["chain"]["glue_ops"]} >= {"resize", "region_stats", "crop_to_mask"}
    # TFLite components only: the Kotlin client (no Core ML artifact for a Swift one)
    [kotlin] = m["app_code"]
    assert kotlin["language"] == "kotlin" and kotlin["variant"] == "tflite_fp32"
    code = (chain_bundle / kotlin["path"]).read_text()
    assert "components/skin/artifacts/skin_segmenter_fp32.tflite" in code and "// step gated:" in code
    report = (chain_bundle / "report.md").read_text()
    assert "## Device chain tflite_fp32 (fp32 tier): passed" in report and "Loss by component" in report


def test_manifest_follows_its_published_schema(chain_bundle):
    from toolkit.chain.bundle import PipelineManifest, schema

    m = json.loads((chain_bundle / "manifest.json").read_text())
    PipelineManifest.model_validate(m)
    published = json.loads((chain_bundle / "manifest.schema.json").read_text())
    assert published == json.loads(json.dumps(schema()))
    assert set(published["required"]) >= {"bundle", "components", "chain", "outputs", "variants", "verdict"}
    cli = run_cli("manifest-schema", "--pipeline")
    assert json.loads(cli.stdout)["title"] == "skinkit assessment bundle manifest"
    recipe_schema = json.loads(run_cli("recipe-schema", "--assessment").stdout)
    assert {"components", "chain", "outputs", "fused", "overlay"} <= set(recipe_schema["properties"])
    assert "op" in recipe_schema["$defs"]["ChainStep"]["properties"]


def _photo(path, size_hw, *, rotate_exif: bool = False, seed_index: int = 3):
    from PIL import Image

    from toolkit.data.synthetic import make_sample

    s = make_sample(7, "test", seed_index, size=max(size_hw))
    img = cv2.resize(s.image, (size_hw[1], size_hw[0]))
    pil = Image.fromarray(img)
    if rotate_exif:  # stored sideways, EXIF orientation 6 says: rotate 90° clockwise to view
        pil = pil.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        pil.save(path, exif=exif.tobytes())
    else:
        pil.save(path)



def test_run_prints_the_assessment_and_writes_an_overlay(chain_bundle, tmp_path):
    _photo(tmp_path / "selfie.jpg", (900, 600), rotate_exif=True)
    run = run_cli("run", str(chain_bundle), str(tmp_path / "selfie.jpg"), "--json", "--overlay", str(tmp_path / "ov"))
    assert run.returncode == 0, run.stderr[-2000:]
    rec = json.loads(run.stdout)
    assert rec["photo_size"] == [900, 600] and rec["analysed_box"] == [0, 150, 600, 750]  # upright, centre square
    assert rec["variant"] == "tflite_fp32" and "LiteRT" in rec["runs"] or "litert" in rec["runs"].lower()
    grade = rec["outputs"]["acne_grade"]
    assert set(grade["probabilities"]) == {"clear", "mild", "moderate", "severe"}
    assert sum(grade["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert 0.2 < rec["outputs"]["skin_mask"]["fraction_of_picture"] < 0.8 and rec["flags"] == []
    overlay = cv2.imread(rec["overlay"])
    assert overlay.shape[:2] == (900, 600)
    fused = json.loads(run_cli("run", str(chain_bundle), str(tmp_path / "selfie.jpg"), "--json", "--variant", "fused:tflite_fp32").stdout)
    assert fused["outputs"]["acne_grade"]["label"] == grade["label"]
    assert fused["outputs"]["skin_mask"]["fraction_of_picture"] == pytest.approx(rec["outputs"]["skin_mask"]["fraction_of_picture"], abs=1e-3)


def test_run_flags_a_photo_without_skin_and_refuses_what_is_not_a_photo(chain_bundle, tmp_path):
    wall = np.zeros((300, 400, 3), np.uint8)
    wall[:] = (40, 90, 200)
    cv2.imwrite(str(tmp_path / "wall.png"), wall)
    rec = json.loads(run_cli("run", str(chain_bundle), str(tmp_path / "wall.png"), "--json").stdout)
    assert rec["flags"] == ["low_skin_coverage"] and rec["outputs"]["skin_coverage"]["values"]["coverage"] < 0.05
    (tmp_path / "notes.jpg").write_text("not a photo")
    bad = run_cli("run", str(chain_bundle), str(tmp_path / "notes.jpg"))
    assert bad.returncode == 1 and "notes.jpg is not an image" in bad.stderr and "Traceback" not in bad.stderr
    other = run_cli("run", str(chain_bundle), str(tmp_path / "wall.png"), "--variant", "coreml_fp16")
    assert other.returncode == 1 and "no variant 'coreml_fp16'" in other.stderr and "tflite_fp32, fused:tflite_fp32" in other.stderr


def test_a_link_that_does_not_connect_is_one_error_before_anything_converts(tmp_path):
    bad = CHAIN.replace("{id: acne, run: acne, input: gated}", "{id: acne, run: acne, input: skin_mask}")
    r = run_cli("export", str(write_recipe(tmp_path / "bad.yaml", bad)), "--out", str(tmp_path / "b"))
    assert r.returncode == 1 and "link skin_mask → acne.image does not connect" in r.stderr
    assert not (tmp_path / "b" / "gated_test").exists()
    with pytest.raises(RecipeError, match="step 'x' runs 'nose', which is not a component"):
        load_chain_recipe(write_recipe(tmp_path / "c.yaml", CHAIN.replace("chain:\n", "chain:\n  - {id: x, run: nose}\n")))
    with pytest.raises(RecipeError, match="needs exactly one of run"):
        load_chain_recipe(write_recipe(tmp_path / "d.yaml", CHAIN.replace("chain:\n", "chain:\n  - {id: x}\n")))


def test_host_only_glue_cannot_be_fused(tmp_path):
    from toolkit.chain.graph import ComponentIO, build
    from toolkit.glue import Value

    recipe = load_chain_recipe(write_recipe(tmp_path / "e.yaml", CHAIN.replace(
        "  - {id: acne, run: acne, input: gated}",
        "  - {id: crop, op: crop_to_mask, inputs: {image: image, mask: skin_mask}, size: 224}\n  - {id: acne, run: acne, input: crop}")))
    ios = {"skin": ComponentIO((224, 224), {"logits": Value("scores", (2, 224, 224), ("non_skin", "skin"))}),
           "acne": ComponentIO((224, 224), {"logits": Value("scores", (4,), ("clear", "mild", "moderate", "severe"))})}
    graph = build(recipe, ios)
    assert not graph.fusable and graph.host_only() == ["crop (crop_to_mask)"]
    from toolkit.chain.graph import fused_module

    with pytest.raises(GlueError, match="crop \\(crop_to_mask\\) run on the host only"):
        fused_module(graph, {}, ("acne.logits",))


def test_verify_reruns_every_gate_and_refuses_a_tampered_bundle(chain_bundle, tmp_path):
    import shutil
    import xml.etree.ElementTree as ET

    ok = run_cli("verify", str(chain_bundle), "--json", "--junit", str(tmp_path / "j.xml"), "--n", "12")
    assert ok.returncode == 0, ok.stderr[-2000:]
    s = json.loads(ok.stdout)
    assert s["kind"] == "pipeline" and s["passed"] and [c["name"] for c in s["components"]] == ["skin", "acne"]
    assert s["evaluation"]["n"] == 12
    assert [v["key"] for v in s["variants"]] == ["tflite_fp32"] and [f["key"] for f in s["fused"]] == ["tflite_fp32"]
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "0"  # 2 component artifacts, 1 chain, 1 fused
    copy = tmp_path / "copy"
    shutil.copytree(chain_bundle, copy)
    with open(copy / "components" / "acne" / "artifacts" / "acne_mobilenetv2_fp32.tflite", "ab") as fh:
        fh.write(b"\0")
    bad = run_cli("verify", str(copy))
    assert bad.returncode == 1 and "artifacts/acne_mobilenetv2_fp32.tflite was modified" in bad.stderr and "(component acne)" in bad.stderr
    (copy / "fused" / "extra.tflite").write_bytes(b"x")
    assert "fused/extra.tflite is not listed" in run_cli("verify", str(copy)).stderr


def test_run_takes_a_single_model_bundle_too(default_bundle, tmp_path):
    out, proc = default_bundle
    assert proc.returncode == 0, proc.stderr[-2000:]
    _photo(tmp_path / "face.png", (480, 640), seed_index=11)
    run = run_cli("run", str(out / "acne_test"), str(tmp_path / "face.png"), "--json", "--variant", "tflite_fp16")
    assert run.returncode == 0, run.stderr[-2000:]
    rec = json.loads(run.stdout)
    assert rec["variant"] == "tflite_fp16" and rec["analysed_box"] == [80, 0, 560, 480]
    logits = rec["outputs"]["logits"]
    assert logits["label"] in ("clear", "mild", "moderate", "severe") and 0.25 < logits["probability"] <= 1.0
    both = run_cli("run", str(out / "acne_test"), str(tmp_path / "face.png"), str(tmp_path / "missing.jpg"), "--json")
    assert both.returncode == 1 and "photo not found" in both.stderr
    first, second = json.loads(both.stdout)
    assert first["outputs"]["logits"]["label"] == logits["label"] and second["error"].startswith("photo not found")


@pytest.mark.parametrize("name", ["acne_gated", "lesion_stats", "selfie_assessment", "skin_texture_regions"])
def test_shipped_assessment_recipes_connect(name, tmp_path):
    """Every link of the shipped chains checked on the real models (one forward pass each), nothing converted."""
    from pathlib import Path

    from toolkit.chain.export import chain_keys, load_components
    from toolkit.chain.graph import build

    path = Path(__file__).resolve().parent.parent / "export_recipes" / f"{name}.yaml"
    recipe = load_chain_recipe(path)
    components = load_components(recipe, path, tmp_path / "log")
    graph = build(recipe, {k: c.io for k, c in components.items()})
    assert graph.fusable == bool(recipe.fused)
    assert "tflite_int8" in chain_keys(recipe)
    for o in recipe.outputs:
        value = graph.values[o.source]
        if o.truth and o.truth.startswith("lesion_"):
            assert value.names == ("melanin", "trouble", "wrinkle", "pore")
        if o.truth == "regions":  # the pasted detections name the generator's regions, in its order
            assert value == Value("labels", (320, 320), ("none", "forehead", "cheek_left", "cheek_right", "nose", "chin"))


def test_a_variant_not_every_component_has_is_refused(tmp_path):
    from toolkit.chain.export import chain_keys

    recipe = load_chain_recipe(write_recipe(tmp_path / "v.yaml", CHAIN + "variants: [tflite_int8]\n"))
    with pytest.raises(RecipeError, match=r"variant tflite_int8 is not a target every component has \(tflite_fp32\)"):
        chain_keys(recipe)


def test_a_metric_against_the_float_chain_is_limited_not_given_a_drop(tmp_path):
    from toolkit.chain.graph import ComponentIO, build
    from toolkit.chain.judge import chain_data, judge_chain
    from toolkit.glue import Value
    from toolkit.verify.stats import Bootstrap

    recipe = load_chain_recipe(write_recipe(tmp_path / "sr.yaml", CHAIN.replace(
        "  - {name: skin_coverage, from: coverage, flag_below: 0.05, flag: low_skin_coverage}",
        "  - {name: skin_coverage, from: coverage, judge: regression, truth: float, metric: mae_vs_float.skin_coverage, "
        "limit: 0.05}")))
    ios = {"skin": ComponentIO((224, 224), {"logits": Value("scores", (2, 224, 224), ("non_skin", "skin"))}),
           "acne": ComponentIO((224, 224), {"logits": Value("scores", (4,), ("clear", "mild", "moderate", "severe"))})}
    graph = build(recipe, ios)
    data = chain_data(12, (224, 224))
    rng = np.random.default_rng(1)
    floats = {"acne.logits": rng.normal(size=(12, 4)), "skin_mask": data.truths["skin_mask"].astype(np.float32),
              "coverage": rng.uniform(0.3, 0.6, (12, 1))}
    device = {**floats, "coverage": floats["coverage"] + 0.1}
    verdict = judge_chain(recipe, graph, device, floats, data, Bootstrap.draw(12, replicates=100), "fp32")
    [crit] = [c for c in verdict["criteria"] if c["name"].startswith("skin_coverage: mae_vs_float")]
    assert crit["point"] == pytest.approx(0.1) and crit["op"] == "<=" and not crit["passed"]  # MAE 0.1 > 0.05
    assert "(upper 95 % CI)" in crit["name"]
    bad = load_chain_recipe(write_recipe(tmp_path / "sr2.yaml", CHAIN.replace(
        "  - {name: skin_coverage, from: coverage, flag_below: 0.05, flag: low_skin_coverage}",
        "  - {name: skin_coverage, from: coverage, judge: regression, truth: float, metric: mae_vs_float.skin_coverage, max_drop: 1}")))
    with pytest.raises(RecipeError, match="is measured against the float chain itself, so it has no drop"):
        judge_chain(bad, graph, device, floats, data, Bootstrap.draw(12, replicates=100), "fp32")


def test_describe_checks_every_link_and_prints_the_chain(tmp_path):
    r = run_cli("describe", str(write_recipe(tmp_path / "g.yaml", CHAIN)))
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert [s["id"] for s in d["steps"]] == ["skin", "skin_labels", "skin_mask", "coverage", "gated", "acne"]
    assert d["outputs"][1] == {"name": "skin_mask", "from": "skin_mask", "kind": "mask", "shape": [224, 224], "dtype": "float32"}
    assert d["device_chains"] == ["tflite_fp32"] and d["fusable"] is True and d["host_only_steps"] == []
    bad = run_cli("describe", str(write_recipe(tmp_path / "b.yaml", CHAIN.replace("inputs: {x: skin.logits}", "inputs: {x: skin.mask}"))))
    assert bad.returncode == 1 and "step 'skin_labels' reads 'skin.mask' (as x), which no earlier step makes" in bad.stderr
    assert "skin.logits" in bad.stderr


def test_overlay_names_masks_and_maps_only(tmp_path):
    from toolkit.chain.graph import ComponentIO, build, overlay_values
    from toolkit.glue import Value

    ios = {"skin": ComponentIO((224, 224), {"logits": Value("scores", (2, 224, 224), ("non_skin", "skin"))}),
           "acne": ComponentIO((224, 224), {"logits": Value("scores", (4,), ("clear", "mild", "moderate", "severe"))})}
    plain = load_chain_recipe(write_recipe(tmp_path / "a.yaml", CHAIN))
    assert overlay_values(plain, build(plain, ios)) == ["skin_mask"]  # the outputs that are masks or maps
    chosen = load_chain_recipe(write_recipe(tmp_path / "b.yaml", CHAIN + "overlay: [skin_labels, skin.logits]\n"))
    assert overlay_values(chosen, build(chosen, ios)) == ["skin_labels", "skin.logits"]
    bad = load_chain_recipe(write_recipe(tmp_path / "c.yaml", CHAIN + "overlay: [acne.logits]\n"))
    with pytest.raises(GlueError, match="overlay names 'acne.logits', which is not a mask, label map or dense class scores"):
        build(bad, ios)


def test_an_output_judged_against_the_wrong_truth_is_refused_before_converting(tmp_path):
    bad = CHAIN.replace("judge: classification, truth: acne_grade", "judge: regression, truth: hydration")
    r = run_cli("export", str(write_recipe(tmp_path / "t.yaml", bad)), "--out", str(tmp_path / "b"))
    assert r.returncode == 1 and "truth hydration is a vector per photo, but acne.logits is a scores of shape [4]" in r.stderr
    assert not (tmp_path / "b" / "gated_test").exists() and "Traceback" not in r.stderr
    lesion = CHAIN.replace("judge: segmentation, truth: skin_mask", "judge: segmentation, truth: lesion_area")
    r = run_cli("export", str(write_recipe(tmp_path / "l.yaml", lesion)), "--out", str(tmp_path / "b"))
    assert r.returncode == 1 and "truth lesion_area holds one column per lesion class" in r.stderr


@pytest.mark.slow
def test_shipped_texture_then_regions_chain_passes_and_runs(tmp_path):
    """The seed system: texture SR, then Mask R-CNN on the super-resolved face, its detections pasted as a label
    map: every device chain judged against the float chain and the generator's regions (about 10 minutes)."""
    from pathlib import Path

    from toolkit.data.synthetic import make_sample

    recipe = Path(__file__).resolve().parent.parent / "export_recipes" / "skin_texture_regions.yaml"
    proc = run_cli("export", str(recipe), "--out", str(tmp_path / "bundles"), timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = tmp_path / "bundles" / "skin_texture_regions"
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["verdict"]["passed"] is True
    for v in m["variants"]:
        regions = v["verification"]["outputs"]["regions"]["metrics"]["miou"]
        assert regions["float"]["value"] > 0.8 and regions["drop"]["value"] < 0.05, (v["key"], regions)
    cv2.imwrite(str(tmp_path / "face.png"), cv2.cvtColor(make_sample(0, "test", 7, size=320).image, cv2.COLOR_RGB2BGR))
    rec = json.loads(run_cli("run", str(bundle), str(tmp_path / "face.png"), "--json", "--overlay", str(tmp_path / "ov")).stdout)
    shares = rec["outputs"]["region_area"]["values"]
    assert set(shares) == {"forehead", "cheek_left", "cheek_right", "nose", "chin"} and all(0.01 < s < 0.3 for s in shares.values())
    assert Path(rec["overlay"]).is_file()
