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
