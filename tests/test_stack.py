"""stack: frames in a row, a column or a grid, gaps between; sizes that cannot be arranged are one error line."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from conftest import run_cli
from cppnviz.node import Context
from cppnviz.nodes.stack import Stack
from cppnviz.ports import Spec
from cppnviz.timebase import Tick


def stacked(shapes, **params):
    values = {p.name: p.default for p in Stack.params}
    values.update(params)
    node = Stack("s", values, Context(fps=Fraction(30)))
    spec = node.configure({"frames": [Spec("frame", shape=(*s, 3)) for s in shapes]})
    # Each input a constant picture, 0.1, 0.2, ...: where each lands is then plain to see.
    frames = [np.full((*s, 3), 0.1 * (i + 1), np.float32) for i, s in enumerate(shapes)]
    out = node.process(Tick(0, 0.0), frames=frames)["frame"]
    assert out.shape == spec["frame"].shape and out.dtype == np.float32
    return out


def test_row_places_frames_left_to_right_with_gaps():
    out = stacked([(8, 5), (8, 3), (8, 4)], layout="row", gap=2, background=1.0)
    assert out.shape == (8, 5 + 2 + 3 + 2 + 4, 3)
    row = out[3, :, 0]
    np.testing.assert_allclose(row, [.1] * 5 + [1] * 2 + [.2] * 3 + [1] * 2 + [.3] * 4, rtol=1e-7)


def test_column_places_frames_top_to_bottom():
    out = stacked([(2, 6), (3, 6)], layout="column", gap=1)
    np.testing.assert_allclose(out[:, 0, 1], [.1, .1, 0, .2, .2, .2], rtol=1e-7)


def test_grid_fills_rows_and_leaves_empty_cells_background():
    out = stacked([(4, 4)] * 5, layout="grid", gap=1, background=0.5)   # 3 columns (ceil sqrt 5), 2 rows
    assert out.shape == (4 * 2 + 1, 4 * 3 + 2, 3)
    cells = [out[y * 5 + 1, x * 5 + 1, 0] for y in range(2) for x in range(3)]
    np.testing.assert_allclose(cells, [.1, .2, .3, .4, .5, .5], rtol=1e-7)   # the sixth cell is empty
    assert stacked([(4, 4)] * 5, layout="grid", columns=2).shape == (12, 8, 3)


def test_a_render_stacks_two_networks_and_refuses_sizes_that_cannot_be_arranged(tmp_path):
    graph = (
        "fps: 10\n"
        "nodes:\n"
        "  a: {type: cppn, params: {width: 32, height: 24, seed: 1}}\n"
        "  b: {type: cppn, params: {width: 16, height: HEIGHT, seed: 2}}\n"
        "  side: {type: stack, params: {gap: 4}, inputs: {frames: [a.frame, b.frame]}}\n"
        "  video: {type: encoder, inputs: {frame: side.frame}, params: {path: out.mp4, preset: ultrafast}}\n")
    (tmp_path / "ok.yaml").write_text(graph.replace("HEIGHT", "24"))
    result = run_cli("render", "ok.yaml", "--seconds", "0.3", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    probe = run_cli_tool("ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
                         tmp_path / "out.mp4")
    assert probe == "52,24"
    (tmp_path / "bad.yaml").write_text(graph.replace("HEIGHT", "20").replace("out.mp4", "bad.mp4"))
    result = run_cli("render", "bad.yaml", "--seconds", "0.3", "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: bad.yaml: node 'side' input 'frames': layout row needs frames of one "
                                     "height; found 24x32, 20x16")
    assert not (tmp_path / "bad.mp4").exists()


def run_cli_tool(*args) -> str:
    import subprocess
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("layout,shapes", [("column", [(4, 4), (4, 5)]), ("grid", [(4, 4), (5, 4)])])
def test_other_layouts_name_the_sizes_they_cannot_arrange(layout, shapes):
    from cppnviz.errors import GraphError
    with pytest.raises(GraphError, match=f"layout {layout} needs frames of one (width|size); found 4x4, "):
        stacked(shapes, layout=layout)


def test_labels_are_drawn_in_each_frames_corner_and_off_by_default():
    plain = stacked([(24, 40), (24, 40)], gap=2)
    labelled = stacked([(24, 40), (24, 40)], gap=2, labels="ab, cd")
    changed = np.any(labelled != plain, axis=2)
    assert changed[:14, 2:30].any() and changed[:14, 44:72].any()    # a caption in each frame's corner
    assert not changed[14:].any() and not changed[:, 30:44].any()   # and nowhere else
    assert set(np.unique(labelled[changed])) <= {0.0, 1.0}           # white text, black outline
    with pytest.raises(Exception, match="param 'labels': 3 captions for 2 frames"):
        stacked([(24, 40), (24, 40)], labels="a,b,c")
