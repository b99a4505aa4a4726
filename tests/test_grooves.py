"""Labelled MIDI grooves rendered with fluidsynth (bench/grooves.py): the accuracy targets, on one short groove."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import grooves  # noqa: E402

WHY = grooves.missing_tools()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"the MIDI grooves cannot be rendered here: {WHY}")


@pytest.fixture(scope="module")
def shuffle(tmp_path_factory):
    """Eight bars of the benchmark's swung groove: (wav, true beat times)."""
    groove = dataclasses.replace(next(g for g in grooves.GROOVES if g.name == "shuffle_96"), bars=8)
    wav, times = grooves.render(groove, tmp_path_factory.mktemp("grooves"))
    return wav, np.asarray(times)


def test_offline_beats_reach_the_targets_and_librosa(shuffle):
    librosa = pytest.importorskip("librosa", reason="librosa (the dev extra) is the reference beat tracker")
    from bench_beats import evaluate

    figures = evaluate(*shuffle)
    assert figures["offline_f"] >= 0.95 and abs(figures["offline_tempo"]) < 0.02, figures
    assert figures["offline_f"] >= figures["librosa_f"], figures
    assert figures["live_f"] >= 0.85, figures
    assert len(figures["lag_ms"]) and figures["lag_ms"].max() <= 30.0, figures
