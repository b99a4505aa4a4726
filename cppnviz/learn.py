"""Learned features: an autoencoder trained on log-mel frames of the user's songs, and its honest PCA baseline."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import AudioError, CppnvizError
from .madefile import file_hash
from .node import Context
from .nodes._learned_model import LearnedModel
from .nodes._logmel import LogMel, MelSettings
from .nodes.audio import AudioFile
from .train import MLP, Adam, batches, mse

log = logging.getLogger(__name__)

HELD_OUT_TIME = 0.2     # the last fifth of every training song is never trained on
METHODS = ("auto", "autoencoder", "pca")


@dataclass
class Corpus:
    """Log-mel vectors of the usable songs, split into training frames and the two held-out sets."""

    train: np.ndarray
    heldout_time: np.ndarray
    heldout_songs: np.ndarray | None
    songs: list[dict] = field(default_factory=list)     # name, sha256, seconds, role (train / held out)
    skipped: list[str] = field(default_factory=list)    # one line per song that could not be decoded


def analysis_signal(path: str, sample_rate: int) -> np.ndarray:
    """A song as the graph's audio_file node hands it to analysis (mono, peak-normalised): same numbers."""
    source = AudioFile("audio", {"path": path, "sample_rate": sample_rate, "normalize": True},
                       Context(fps=Fraction(60)))
    source.configure({})
    return source.mono


def load_corpus(paths: list[str], settings: MelSettings, *, holdout: float, seed: int) -> Corpus:
    """Decode every song (skipping those that fail), frame them, and split songs and time for honest errors."""
    mel = LogMel(settings)
    usable, skipped = [], []
    for path in paths:
        try:
            signal = analysis_signal(path, settings.sample_rate)
        except (AudioError, OSError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        usable.append((path, signal))
    if not usable:
        raise CppnvizError("no song could be decoded: " + "; ".join(skipped))
    # Held-out songs: a seeded choice, never all of them (training needs one).
    order = np.random.default_rng(seed).permutation(len(usable))
    count = min(len(usable) - 1, round(holdout * len(usable)))
    held = set(order[:count].tolist())
    train, heldout_time, heldout_songs, songs = [], [], [], []
    for i, (path, signal) in enumerate(usable):
        vectors = mel.grid(signal)
        songs.append({"name": Path(path).name, "sha256": file_hash(path),
                      "seconds": round(len(signal) / settings.sample_rate, 3),
                      "role": "held out" if i in held else "train"})
        if i in held:
            heldout_songs.append(vectors)
        else:
            cut = max(1, round(len(vectors) * (1 - HELD_OUT_TIME)))
            train.append(vectors[:cut])
            heldout_time.append(vectors[cut:])
    return Corpus(np.concatenate(train), np.concatenate(heldout_time),
                  np.concatenate(heldout_songs) if heldout_songs else None, songs, skipped)


def fit_pca(frames: np.ndarray, size: int, settings: MelSettings) -> LearnedModel:
    """The top `size` principal components of the training frames (in float64, stored float32)."""
    mean = frames.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(frames - mean, full_matrices=False)
    return LearnedModel("pca", settings, mean=mean.astype(np.float32), components=vt[:size].astype(np.float32))


def pca_error(model: LearnedModel, frames: np.ndarray) -> float:
    """Mean squared reconstruction error per input value."""
    codes = model.encode(frames)
    rebuilt = codes @ model.components + model.mean
    return float(np.mean(np.square(rebuilt - frames, dtype=np.float64)))


def autoencoder(n_in: int, hidden: list[int], size: int, seed: int) -> MLP:
    """n_in -> hidden -> size (sigmoid: features in [0, 1], as seed 003) -> mirrored hidden -> n_in.

    tanh hidden layers and a linear output: it reconstructs the centred frames (inputs minus the
    training mean), which trains several times faster than raw [0, 1] frames through a sigmoid.
    """
    sizes = [n_in, *hidden, size, *reversed(hidden), n_in]
    net = MLP.create(sizes, activation="tanh", output="identity", seed=seed)
    net.activations[len(hidden)] = "sigmoid"
    return net


def halves(net: MLP, depth: int) -> tuple[MLP, MLP]:
    """(the first `depth` layers: input to bottleneck, the rest: bottleneck to output) as networks of their own."""
    return tuple(MLP([w.copy() for w in net.weights[part]], [b.copy() for b in net.biases[part]],
                     list(net.activations[part])) for part in (slice(0, depth), slice(depth, None)))


def ae_error(net: MLP, frames: np.ndarray, mean: np.ndarray, chunk: int = 8192) -> float:
    """Mean squared reconstruction error per input value, in chunks (bounded memory)."""
    total = 0.0
    for i in range(0, len(frames), chunk):
        part = frames[i:i + chunk] - mean
        total += float(np.sum(np.square(net(part) - part, dtype=np.float64)))
    return total / frames.size if frames.size else float("nan")


def train_autoencoder(corpus: Corpus, *, hidden: list[int], size: int, epochs: int, seed: int,
                      batch_size: int = 64, lr: float = 3e-3, patience: int = 10,
                      progress=None) -> tuple[MLP, np.ndarray, int]:
    """Adam on mini-batches; early stopping on the held-out time's error.

    Returns (the network of the best epoch, the training mean it expects subtracted, that epoch).
    """
    mean = corpus.train.mean(axis=0, dtype=np.float64).astype(np.float32)
    frames = corpus.train - mean
    net = autoencoder(frames.shape[1], hidden, size, seed)
    optimiser = Adam(net, lr=lr)
    rng = np.random.default_rng(seed)
    best, best_error, best_epoch = copy.deepcopy(net), ae_error(net, corpus.heldout_time, mean), 0
    for epoch in range(1, epochs + 1):
        for index in batches(len(frames), batch_size, rng):
            x = frames[index]
            out, cache = net.forward(x)
            grads, _ = net.backward(cache, mse(out, x)[1])
            optimiser.step(grads)
        error = ae_error(net, corpus.heldout_time, mean)
        if progress is not None:
            progress(epoch, error)
        if error < best_error:
            best, best_error, best_epoch = copy.deepcopy(net), error, epoch
        elif epoch - best_epoch >= patience:
            break                   # the held-out error stopped improving: more epochs would overfit
    return best, mean, best_epoch
