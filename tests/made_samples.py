"""Small files of the kinds the project makes, for the node contract: node type -> maker(folder) -> path."""

from pathlib import Path

import numpy as np

from cppnviz import grid
from cppnviz.nodes._learned_model import LearnedModel
from cppnviz.nodes._logmel import MelSettings


def tiny_grid(folder: Path) -> Path:
    """A 3x3 grid of 16x24 random frames over features 0 and 1 in 0..1."""
    path = folder / "tiny.grid"
    writer = grid.GridWriter(path, grid.make_header(width=24, height=16, vary=[0, 1], steps=[3, 3],
                                                    ranges=[[0, 1], [0, 1]], fixed=None, source={}))
    rng = np.random.default_rng(0)
    for _ in range(9):
        writer.add(grid.encode(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)))
    writer.publish()
    return path


def tiny_learned_model(folder: Path) -> Path:
    """A 3-feature PCA model over 8 mels x 2 frames at 44100 Hz (the contract's audio rate)."""
    path = folder / "tiny_model.npz"
    settings = MelSettings(sample_rate=44100, n_mels=8, context=2)
    components = np.linalg.qr(np.random.default_rng(0).standard_normal((settings.size, 3)))[0].T
    LearnedModel("pca", settings, mean=np.full(settings.size, 0.5, np.float32),
                 components=components.astype(np.float32)).save(path, {})
    return path


# A node with inputs whose required path param is a file it reads (not one it writes) gets one of these.
MAKERS = {"frame_grid": tiny_grid, "learned": tiny_learned_model}
