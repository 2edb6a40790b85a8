"""The architecture, checked on the source: plug-ins keep their switches to themselves, packages use each
other's public names only, and the import-linter contracts and ruff hold (as `.ci/run` runs them)."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "toolkit"


def _sources(under: Path = PACKAGE):
    for path in sorted(under.rglob("*.py")):
        yield path, path.read_text()


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def test_no_private_name_is_imported_across_packages():
    found = []
    for path, text in _sources():
        module = _module(path)
        here = _package_of(module, path)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("toolkit"):
                continue
            source_pkg = node.module if (ROOT / Path(*node.module.split("."))).is_dir() else node.module.rpartition(".")[0]
            for alias in node.names:
                if alias.name.startswith("_") and source_pkg != here and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}")
    assert found == []


def test_tasks_are_switched_on_only_inside_tasks():
    pattern = re.compile(r"""\btask\s*(==|!=|in\b)|["'](classification|regression|segmentation|super_resolution)["']\s*(==|!=|in\b)""")
    found = [f"{p.relative_to(ROOT)}:{i}" for p, text in _sources() if "toolkit/tasks/" not in p.as_posix()
             and "toolkit/models/" not in p.as_posix()
             for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_formats_are_switched_on_only_inside_backends():
    pattern = re.compile(r"""(==|!=)\s*["'](onnx|tflite|coreml)["']|["'](onnx|tflite|coreml)["']\s*(==|!=)|\{\s*["'](onnx|tflite|coreml)["']\s*:""")
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p, text in _sources() if "toolkit/backends/" not in p.as_posix()
             for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert found == []


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_import_linter_contracts_hold():
    proc = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_ruff_is_clean():
    proc = subprocess.run([_tool("ruff"), "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
