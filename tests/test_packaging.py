"""A real wheel (what `pip install --target` gives TouchDesigner users) holds every module of the tree."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"cppnviz": "cppnviz", "nodes": "cppnviz/nodes", "host_bridge": "cppnviz/host_bridge"}


def test_wheel_contains_every_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("cppnviz-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, installed in MAPPING.items():
        for module in (ROOT / folder).rglob("*.py"):
            expected.add(f"{installed}/{module.relative_to(ROOT / folder).as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"modules missing from the wheel (add their packages to pyproject.toml): {missing}"
