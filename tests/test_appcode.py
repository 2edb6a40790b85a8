"""App code (toolkit.chain.appcode): the Kotlin and Swift files a chain bundle's manifest makes. No Kotlin or Swift
compiler runs here: these check what the files state (steps in order, one function per used op, the manifest's
literals and artifacts) and that their brackets nest."""

import re

import pytest

from toolkit.chain import appcode_kotlin, appcode_swift
from toolkit.chain.appcode import function_name, write_app_code
from toolkit.chain.graph import Step
from toolkit.errors import BadInputError
from toolkit.glue import OPS, Value, get_op, infer, resolve_params

PRECISIONS = {"tflite": ("int8", "fp32"), "coreml": ("fp16", "fp32")}
FILES = {"skin": "skin_segmenter", "acne": "acne_classifier", "lesions": "lesion_unet"}
SEG = ("non_skin", "skin")
GRADES = ("clear", "mild", "moderate", "severe")
LESIONS = ("background", "papule", "pustule", "scar")


def _artifact(component: str, fmt: str, precision: str) -> dict:
    ext = "tflite" if fmt == "tflite" else "mlpackage"
    return {"key": f"{fmt}_{precision}", "path": f"components/{component}/artifacts/{FILES[component]}_{precision}.{ext}",
            "format": fmt, "precision": precision}


def _component(name: str, labels: tuple[str, ...], outputs: dict[str, Value]) -> dict:
    return {"name": name, "input_size": [224, 224], "labels": list(labels),
            "outputs": [{"name": n, **v.describe()} for n, v in outputs.items()],
            "artifacts": [_artifact(name, fmt, p) for fmt, ps in PRECISIONS.items() for p in ps]}


class _Chain:
    """Steps written as the chain graph describes them (Step.describe), every link inferred by toolkit.glue."""

    def __init__(self, size: int):
        self.values = {"image": Value("image", (size, size, 3))}
        self.steps: list[dict] = []

    def run(self, sid: str, component: str, picture: str, outputs: dict[str, Value]) -> None:
        makes = {f"{sid}.{n}": v for n, v in outputs.items()}
        self.values.update(makes)
        self.steps.append(Step(sid, {"image": picture}, component=component, kinds={"image": "image"}, makes=makes).describe())

    def op(self, sid: str, op: str, inputs: dict[str, str], **params) -> None:
        o = get_op(op)
        p = resolve_params(o, params, sid)
        made = infer(o, {port: self.values[ref] for port, ref in inputs.items()}, p, sid)
        makes = {(f"{sid}.{n}" if n else sid): v for n, v in made.items()}
        self.values.update(makes)
        self.steps.append(Step(sid, inputs, op=o, params=p, kinds={k: self.values[r].kind for k, r in inputs.items()},
                               makes=makes).describe())


def _manifest() -> dict:
    skin_out = {"logits": Value("scores", (2, 224, 224), SEG)}
    acne_out = {"logits": Value("scores", (4,), GRADES)}
    lesion_out = {"logits": Value("scores", (4, 224, 224), LESIONS)}
    c = _Chain(256)
    c.op("picture", "resize", {"x": "image"}, size=224)
    c.run("skin", "skin", "picture", skin_out)
    c.op("skin_labels", "argmax", {"x": "skin.logits"})
    c.op("skin_mask", "class_mask", {"x": "skin_labels"}, **{"class": "skin"})
    c.op("masked", "apply_mask", {"image": "picture", "mask": "skin_mask"}, fill=127.5)
    c.run("acne", "acne", "masked", acne_out)
    c.op("acne_probs", "softmax", {"x": "acne.logits"})
    c.run("lesions", "lesions", "masked", lesion_out)
    c.op("lesion_labels", "argmax", {"x": "lesions.logits"})
    c.op("lesion_labels_small", "resize", {"x": "lesion_labels"}, size=112)
    c.op("skin_mask_small", "resize", {"x": "skin_mask"}, size=112)
    c.op("picture_small", "resize", {"x": "picture"}, size=[112, 112])
    c.op("stats", "region_stats", {"labels": "lesion_labels_small", "image": "picture_small", "within": "skin_mask_small"})
    c.op("spots", "count_regions", {"labels": "lesion_labels_small", "within": "skin_mask_small"}, classes=["papule", "pustule"],
         min_pixels=6)
    c.op("skin_coverage", "coverage", {"x": "skin_mask"})
    outputs = [("acne_grade", "acne_probs"), ("skin_coverage", "skin_coverage"), ("lesion_area", "stats.area"),
               ("lesion_intensity", "stats.intensity"), ("lesion_regions", "spots")]
    return {
        "bundle": "acne_gated", "version": "0.3.1",
        "input": {"size": [256, 256], "fit": "center_crop"},
        "components": [_component("skin", SEG, skin_out), _component("acne", GRADES, acne_out),
                       _component("lesions", LESIONS, lesion_out)],
        "chain": {"steps": c.steps},
        "outputs": [{"name": n, "from": ref, **c.values[ref].describe()} for n, ref in outputs],
    }


USED = ("resize", "argmax", "class_mask", "apply_mask", "softmax", "region_stats", "count_regions", "coverage")
KEYWORD = {".kt": "fun", ".swift": "func"}


def _nesting(text: str) -> list[str]:
    """Brackets that do not nest, outside comments and string literals (which hold no nested quotes here)."""
    pairs, stack, problems = {")": "(", "]": "[", "}": "{"}, [], []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        if text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        if ch == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "([{":
            stack.append((ch, i))
        elif ch in ")]}":
            if not stack or stack[-1][0] != pairs[ch]:
                problems.append(f"{ch} at {i}")
            else:
                stack.pop()
        i += 1
    return problems + [f"unclosed {c} at {i}" for c, i in stack]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("app")
    paths = write_app_code(_manifest(), out, variant="tflite_int8")
    return {p.suffix: p.read_text() for p in paths}, paths


def test_both_files_are_written_with_the_header(files):
    texts, paths = files
    assert sorted(p.name for p in paths) == ["AcneGatedChain.kt", "AcneGatedChain.swift"]
    for suffix, text in texts.items():
        head = text[:800]
        assert head.startswith(f"// AcneGatedChain{suffix}: generated by skinkit")
        assert "bundle acne_gated, version 0.3.1" in head and "Not compiled by skinkit: check it builds in your app" in head
    assert "Variant tflite_int8" in texts[".kt"]
    assert "Variant coreml_fp16" in texts[".swift"] and "tflite_int8, is not a coreml key: this file runs coreml_fp16" in texts[".swift"]


def test_run_holds_every_step_in_the_manifests_order(files):
    texts, _ = files
    ids = [s["id"] for s in _manifest()["chain"]["steps"]]
    for suffix, text in texts.items():
        run = text[text.index(f"{KEYWORD[suffix]} run("):text.index(f"{KEYWORD[suffix]} fit(")]
        positions = [run.index(f"// step {sid}:") for sid in ids]
        assert positions == sorted(positions)
        assert 'v["spots"] = countRegions(' in run and 'v["skin_mask"] = classMask(' in run
        for name in ("acne_grade", "skin_coverage", "lesion_area", "lesion_intensity", "lesion_regions"):
            assert f'"{name}"' in run[run.rindex("return"):]


def test_one_function_per_used_op_and_none_for_the_others(files):
    texts, _ = files
    for suffix, text in texts.items():
        for op in OPS:
            count = len(re.findall(rf"\b{KEYWORD[suffix]} {function_name(op)}\(", text))
            assert count == (1 if op in USED else 0), (suffix, op, count)
        for op in USED:
            assert f"// glue op {op} (toolkit.glue" in text
        assert OPS["class_mask"].doc in text and "// used by steps: picture, lesion_labels_small, skin_mask_small, picture_small" in text


def test_the_manifests_literals_are_written_in(files):
    texts, _ = files
    kt, swift = texts[".kt"], texts[".swift"]
    for text in (kt, swift):
        for luma in ("0.299", "0.587", "0.114"):
            assert luma in text
        assert "INPUT_HEIGHT = 256" in text or "inputHeight = 256" in text
    assert 'resize(v.getValue("image"), 3, 256, 256, 224, 224, nearest = false, channelLast = true)' in kt
    assert 'resize(v["lesion_labels"]!, 1, 224, 224, 112, 112, nearest: true, channelLast: false)' in swift
    assert 'classMask(v.getValue("skin_labels"), 1)' in kt and 'classMask(v["skin_labels"]!, 1)' in swift
    assert "127.5f)" in kt and 'applyMask(v["picture"]!, v["skin_mask"]!, 127.5)' in swift
    assert 'countRegions(v.getValue("lesion_labels_small"), v.getValue("skin_mask_small"), 112, 112, intArrayOf(1, 2), 6)' in kt
    assert 'regionStats(v["lesion_labels_small"]!, v["picture_small"]!, v["skin_mask_small"]!, [1, 2, 3])' in swift
    assert 'softmax(v.getValue("acne.logits"), 4, 1)' in kt and 'argmax(v["skin.logits"]!, 2, 50176)' in swift
    assert 'Out("logits", 2, 224, 224)' in kt and 'labels: ["clear", "mild", "moderate", "severe"]' in swift


def test_only_the_chosen_variants_artifacts_appear(files):
    texts, _ = files
    every = {a["key"]: a["path"] for c in _manifest()["components"] for a in c["artifacts"] if a["key"]}
    paths = {k: [a["path"] for c in _manifest()["components"] for a in c["artifacts"] if a["key"] == k] for k in every}
    for suffix, chosen in ((".kt", "tflite_int8"), (".swift", "coreml_fp16")):
        for key, ps in paths.items():
            for p in ps:
                assert (p in texts[suffix]) == (key == chosen), (suffix, p)


def test_a_coreml_variant_runs_itself_on_ios_and_the_first_tflite_key_on_android(tmp_path):
    paths = write_app_code(_manifest(), tmp_path, variant="coreml_fp32")
    texts = {p.suffix: p.read_text() for p in paths}
    assert "components/skin/artifacts/skin_segmenter_fp32.mlpackage" in texts[".swift"]
    assert "skin_segmenter_fp16.mlpackage" not in texts[".swift"]
    assert "skin_segmenter_int8.tflite" in texts[".kt"] and "coreml_fp32, is not a tflite key: this file runs tflite_int8" in texts[".kt"]


def test_brackets_nest_in_both_files(files):
    texts, _ = files
    for suffix, text in texts.items():
        assert _nesting(text) == [], suffix


def test_an_unknown_op_is_an_error_naming_it(tmp_path):
    manifest = _manifest()
    manifest["chain"]["steps"][2]["op"] = "blur"
    with pytest.raises(BadInputError, match="'blur'") as info:
        write_app_code(manifest, tmp_path, variant="tflite_int8")
    assert "resize" in info.value.fix
    assert not list(tmp_path.iterdir())


def test_a_variant_a_component_lacks_is_an_error(tmp_path):
    manifest = _manifest()
    manifest["components"][1]["artifacts"] = [a for a in manifest["components"][1]["artifacts"] if a["key"] != "tflite_fp32"]
    with pytest.raises(BadInputError, match="acne has no tflite_fp32 artifact"):
        write_app_code(manifest, tmp_path, variant="tflite_fp32")


def test_every_glue_op_has_a_kotlin_and_a_swift_template():
    assert set(appcode_kotlin.OPS) == set(OPS) == set(appcode_swift.OPS)
