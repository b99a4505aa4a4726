"""README's two commands stay true: CI runs the test command verbatim, the demo command names real files."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```(?:sh|bash)?\n(.+?)\n```", text, re.S)
    assert match, f"README.md has no command after <!-- {marker} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
    command = readme_command("test-command")
    assert command in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in command


def test_demo_command_renders_the_bundled_demo():
    command = readme_command("demo-command")
    graph = re.search(r"cppnviz render (\S+)", command).group(1)
    assert (ROOT / graph).is_file()
    assert "demo.wav" in (ROOT / graph).read_text() and (ROOT / "examples" / "demo.wav").is_file()


def test_ci_runs_every_step_and_fails_at_the_end_if_any_failed(tmp_path):
    # A copy of .ci/run in an empty project, where a stand-in python3 logs each call and fails:
    # every step must still be tried, and the script must exit non-zero naming the failures.
    import os
    import shutil
    import subprocess
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("python3", "ffprobe", "oscsend", "pd", "g++", "fluidsynth"):
        stub = bin_dir / tool
        stub.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {log}\nexit 3\n")
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode != 0
    calls = log.read_text().splitlines()
    assert sum(line.startswith("python3 -m venv") for line in calls) == 2, calls   # README run and NumPy 1.24 run
    for name in ("README test command", "CUDA kernels compiled by NVRTC", "NumPy 1.24"):
        assert f"== {name}" in result.stdout and "FAILED" in result.stdout, result.stdout
    assert "CI failed" in result.stdout
