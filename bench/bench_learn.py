"""Learned features: training time per minute of music, inference cost per frame, autoencoder against PCA.

Usage: python bench/bench_learn.py [--seconds 20] [--sizes 4,10,16] [--epochs 100]

Music: eight pieces the benchmark makes (tests/pieces.py: four styles, two seeds each), two of them
held out as unseen songs (--holdout 0.25), the last 20 % of the others as held-out time. The default
model of `cppnviz learn` (64 mels x 4 frames, hidden 256,64). Errors are mean squared reconstruction
errors per log-mel value; lower is better.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import machine  # noqa: E402
from pieces import piece, write_wav  # noqa: E402

from cppnviz import learn  # noqa: E402
from cppnviz.nodes._learned_model import LearnedModel  # noqa: E402
from cppnviz.nodes._logmel import LogMel, MelSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each piece")
    ap.add_argument("--sizes", default="4,10,16")
    ap.add_argument("--epochs", type=int, default=100)
    args = ap.parse_args()
    print(machine.cpu_model(), "| load", machine.load())
    settings = MelSettings()
    with tempfile.TemporaryDirectory() as folder:
        songs = [str(write_wav(Path(folder) / f"p{s}_{k}.wav", piece(s, args.seconds, 10 * k + s)))
                 for s in range(4) for k in range(2)]
        began = time.perf_counter()
        corpus = learn.load_corpus(songs, settings, holdout=0.25, seed=0)
        prepare = time.perf_counter() - began
    minutes = len(corpus.train) * settings.hop / settings.sample_rate / 60
    print(f"{len(songs)} pieces of {args.seconds:g} s; training frames {len(corpus.train)} "
          f"({minutes:.2f} min of music), decode + log-mel {prepare:.1f} s")
    print("| size | PCA held-out time | AE held-out time | PCA held-out songs | AE held-out songs | epochs | "
          "train s (CPU s) | CPU s per min of music |")
    print("|---|---|---|---|---|---|---|---|")
    last = None
    for size in [int(s) for s in args.sizes.split(",")]:
        pca = learn.fit_pca(corpus.train, size, settings)
        wall, cpu = time.perf_counter(), time.process_time()
        net, mean, epoch = learn.train_autoencoder(corpus, hidden=[256, 64], size=size, epochs=args.epochs, seed=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        row = [learn.pca_error(pca, corpus.heldout_time), learn.ae_error(net, corpus.heldout_time, mean),
               learn.pca_error(pca, corpus.heldout_songs), learn.ae_error(net, corpus.heldout_songs, mean)]
        print(f"| {size} | " + " | ".join(f"{e:.5f}" for e in row) +
              f" | {epoch} | {wall:.1f} ({cpu:.1f}) | {cpu / minutes:.1f} |")
        encoder, decoder = learn.halves(net, 3)
        last = LearnedModel("autoencoder", settings, encoder=encoder, decoder=decoder, mean=mean)
    # Inference per frame as the node runs it: the log-mel vector of one tick, then the encoder.
    mel, signal = LogMel(settings), np.random.default_rng(0).uniform(-0.5, 0.5, settings.sample_rate).astype(np.float32)
    before, after = settings.reach
    segment = signal[: before + after]
    reps = 2000
    began = time.perf_counter()
    for _ in range(reps):
        last.encode(mel.vectors(segment, [before]))
    print(f"inference per frame (log-mel of {settings.context} windows + encoder): "
          f"{(time.perf_counter() - began) / reps * 1e6:.0f} us")


if __name__ == "__main__":
    main()
