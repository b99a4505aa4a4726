"""STFT band energies: one window per frame, summed into bands given in Hz."""

from __future__ import annotations

import logging

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec

log = logging.getLogger(__name__)

# The seed post's table (Teach Me Audio): 20-60, 60-250, ..., 6k-20k Hz (7 bands).
POST_EDGES_HZ = (20.0, 60.0, 250.0, 500.0, 2000.0, 4000.0, 6000.0, 20000.0)
# The seed code's 8 octave bands, written as FFT bins of a 2048-point FFT at 44100 Hz;
# kept in Hz so they mean the same frequencies at any sample rate and n_fft.
OCTAVE8_BINS = (0, 4, 12, 28, 60, 124, 252, 508, 1024)
OCTAVE8_EDGES_HZ = tuple(b * 44100.0 / 2048 for b in OCTAVE8_BINS)


def edge_bins(edges_hz, n_fft: int, sample_rate: int) -> np.ndarray:
    """FFT bin of each edge: round(f * n_fft / sr), clipped to the n_fft/2 bins kept."""
    bins = np.round(np.asarray(edges_hz, dtype=np.float64) * n_fft / sample_rate).astype(int)
    return np.clip(bins, 0, n_fft // 2)


def band_matrix(edges_hz, n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_bands, n_fft/2) 0/1 matrix: band b sums bins [edge_b, edge_b+1), as the seed does."""
    bins = edge_bins(edges_hz, n_fft, sample_rate)
    matrix = np.zeros((len(bins) - 1, n_fft // 2), dtype=np.float32)
    for b, (lo, hi) in enumerate(zip(bins[:-1], bins[1:])):
        matrix[b, lo:hi] = 1.0
    return matrix


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


def mel_matrix(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_mels, n_fft/2) triangular HTK-mel filters from 0 Hz to Nyquist, peak 1."""
    freqs = np.arange(n_fft // 2) * sample_rate / n_fft
    points = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = points[:-2, None], points[1:-1, None], points[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class STFTBands(Node):
    """Band energies of a window of n_fft samples per frame, centred on the frame time."""

    type_name = "stft_bands"
    stage = "analysis"
    inputs = (Input("audio", "audio", "the audio to analyse"),)
    outputs = (Output("bands", "features", "one value per band, shape (n_bands,)"),)
    params = (
        Param("n_fft", "int", 2048, "window length in samples (the seed's G)", min=16, max=65536, unit="samples"),
        Param("window", "choice", "hann", "window function: none (rectangular, as the seed) or hann",
              choices=("none", "hann")),
        Param("scale", "choice", "magnitude", "sum magnitudes (as the seed) or powers (magnitude squared)",
              choices=("magnitude", "power")),
        Param("bands", "choice", "post", "band table: post (the post's 7 bands, 20 Hz-20 kHz), octave8 "
              "(the seed code's 8 bands), mel (n_mels triangular mel filters) or custom (edges)",
              choices=("post", "octave8", "mel", "custom"), shapes=True),
        Param("edges", "floats", list(POST_EDGES_HZ), "band edges in Hz for bands: custom (n+1 edges give n bands)",
              min=0, max=96000, unit="Hz", shapes=True),
        Param("n_mels", "int", 16, "number of mel filters for bands: mel (NeuroMV: the size of z)", min=1, max=256, shapes=True),
        Param("align", "choice", "center", "where the window sits: center (on the frame time), start (begins at it, "
              "as the seed code: ~23 ms ahead) or end (ends at it, as live input)",
              choices=("center", "start", "end")),
    )

    def configure(self, inputs):
        sr = inputs["audio"].sample_rate
        n_fft = self.p.n_fft
        if n_fft % 2:
            raise ParamError(f"param 'n_fft': expected an even number, found {n_fft}")
        if self.p.bands == "mel":
            self.matrix = mel_matrix(self.p.n_mels, n_fft, sr)
            centres = mel_to_hz(np.linspace(0.0, hz_to_mel(sr / 2), self.p.n_mels + 2))[1:-1]
            labels = tuple(f"mel{i}_{round(c)}Hz" for i, c in enumerate(centres))
        else:
            edges = {"post": POST_EDGES_HZ, "octave8": OCTAVE8_EDGES_HZ}.get(self.p.bands, self.p.edges)
            edges = list(edges) if isinstance(edges, (list, tuple)) else [edges]
            if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
                raise ParamError(f"param 'edges': expected at least 2 increasing frequencies in Hz, found {edges}")
            self.matrix = band_matrix(edges, n_fft, sr)
            labels = tuple(f"{round(a)}-{round(b)}Hz" for a, b in zip(edges, edges[1:]))
            empty = [labels[i] for i in np.flatnonzero(self.matrix.sum(axis=1) == 0)]
            if empty:
                log.warning("node '%s': bands %s hold no FFT bin at n_fft=%d, sr=%d; they stay 0",
                            self.name, ", ".join(empty), n_fft, sr)
        self.taper = np.hanning(n_fft).astype(np.float32) if self.p.window == "hann" else None
        self.lead = {"center": n_fft // 2, "start": 0, "end": n_fft}[self.p.align]
        return {"bands": Spec("features", size=len(labels), labels=labels)}

    def spectrum(self, segment: np.ndarray) -> np.ndarray:
        """|FFT| (or its square) of one window, the n_fft/2 bins the seed keeps."""
        if self.taper is not None:
            segment = segment * self.taper
        spec = np.abs(np.fft.rfft(segment)[: self.p.n_fft // 2]).astype(np.float32)
        return spec * spec if self.p.scale == "power" else spec

    def process(self, tick, audio):
        segment = audio.window(audio.now - self.lead, self.p.n_fft)
        return {"bands": self.matrix @ self.spectrum(segment)}
