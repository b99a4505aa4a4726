"""The live scrolling spectrogram: to-image's layout (cppnviz.soundpic) as a frame, newest column at the right."""

from __future__ import annotations

import numpy as np

from cppnviz.errors import ParamError
from cppnviz.node import Node
from cppnviz.params import Param
from cppnviz.ports import Input, Output, Spec
from cppnviz.soundpic import SCALES, Layout, bins_to_rows, magnitude_to_unit, resample_axis, row_positions, window


class SpectrogramImage(Node):
    """A scrolling spectrogram, low frequencies at the bottom, in the same rows and dB scale as `cppnviz to-image`."""

    type_name = "spectrogram_image"
    # Sequential and stateful (it keeps the columns it has drawn): an analysis-side node that draws.
    stage = "analysis"
    inputs = (Input("audio", "audio", "the audio to draw"),)
    outputs = (Output("frame", "frame", "gray spectrogram, float32 (height, width, 3) in [0, 1], newest column right"),)
    params = (
        Param("width", "int", 256, "frame width: one column per hop", min=16, max=7680, unit="px", shapes=True),
        Param("height", "int", 256, "frame height: the layout's rows resampled to it", min=16, max=4320, unit="px",
              shapes=True),
        Param("n_fft", "int", 2048, "window length", min=64, max=65536, unit="samples"),
        Param("hop_length", "int", 512, "samples per column", min=1, max=65536, unit="samples"),
        Param("scale", "choice", "log", "rows: log (low octaves stretched, as to-image) or linear (one per bin)",
              choices=SCALES),
        Param("bins_per_octave", "int", 48, "rows per octave at least, for scale log", min=1, max=1024),
        Param("db_range", "float", 80.0, "dB from black to white", min=1, max=300, unit="dB"),
        Param("db_top", "float", 6.0, "dB of white, above a full-scale sine", min=-200, max=200, unit="dB"),
    )

    def configure(self, inputs):
        p = self.p
        if p.n_fft % 2:
            raise ParamError(f"param 'n_fft': expected an even number, found {p.n_fft}")
        self.layout = Layout(sr=inputs["audio"].sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, scale=p.scale,
                             bins_per_octave=p.bins_per_octave, db_range=p.db_range, db_top=p.db_top)
        # the layout's rows resampled to `height`, top row first: each output row's position in bins
        self.rows = resample_axis(row_positions(self.layout)[0], p.height, 0)[::-1]
        self.taper = window(p.n_fft)
        self.frame = np.zeros((p.height, p.width, 3), np.float32)
        self.reset()
        return {"frame": Spec("frame", shape=self.frame.shape)}

    def reset(self):
        self.columns = np.zeros((self.p.height, self.p.width), np.float32)
        self.next = 0           # the next column to draw (its window is centred on sample next * hop_length)

    def process(self, tick, audio):
        n_fft, hop = self.p.n_fft, self.p.hop_length
        # Offline, the newest column is centred on now; live, its window ends at the newest sample.
        position = audio.start + audio.now - (0 if audio.final else n_fft // 2)
        last = position // hop
        first = max(self.next, last - self.p.width + 1)
        if audio.start > 0:     # a streamed or live buffer: only columns whose windows it still holds
            first = max(first, -(-(audio.start + n_fft // 2) // hop))
        count = last - first + 1
        if count > 0:
            segments = np.stack([audio.window(j * hop - n_fft // 2 - audio.start, n_fft)
                                 for j in range(first, last + 1)]).astype(np.float64)
            unit = magnitude_to_unit(np.abs(np.fft.rfft(segments * self.taper, axis=1)).T, self.layout)
            drawn = bins_to_rows(unit, self.rows)
            keep = self.p.width - min(count, self.p.width)
            self.columns[:, :keep] = self.columns[:, self.p.width - keep:].copy()
            self.columns[:, keep:] = drawn[:, -min(count, self.p.width):]
            self.next = last + 1
        self.frame[...] = self.columns[..., None]
        return {"frame": self.frame}
