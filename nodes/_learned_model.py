"""A learned-features model file: the encoder (autoencoder or PCA) and the log-mel settings it was trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cppnviz import madefile
from cppnviz.train import MLP

from ._logmel import MelSettings

KIND = "learned features"
VERSION = 1


@dataclass
class LearnedModel:
    """Maps log-mel vectors [shape=(n, settings.size)] to features [shape=(n, size)]."""

    method: str                        # "autoencoder" or "pca"
    settings: MelSettings
    encoder: MLP | None = None         # the autoencoder's first half (bottleneck activation included)
    decoder: MLP | None = None         # its second half: features back to centred frames (for checks and tools)
    mean: np.ndarray | None = None     # the training frames' mean, subtracted before either encoder
    components: np.ndarray | None = None   # PCA: the top components, (size, n_in)
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.encoder.sizes[-1] if self.method == "autoencoder" else len(self.components)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Features of each vector, float32."""
        vectors = np.asarray(vectors, np.float32)
        centred = vectors - self.mean
        if self.method == "autoencoder":
            return self.encoder(centred).astype(np.float32, copy=False)
        return (centred @ self.components.T).astype(np.float32)

    def reconstruct(self, features: np.ndarray) -> np.ndarray:
        """Log-mel vectors rebuilt from features (the decoder, or the PCA components), float32."""
        features = np.asarray(features, np.float32)
        centred = self.decoder(features) if self.method == "autoencoder" else features @ self.components
        return (centred + self.mean).astype(np.float32, copy=False)

    def save(self, path, header: dict[str, Any]) -> None:
        """Write the model with `header` (songs, errors, ...) beside its method and mel settings."""
        arrays = {"mean": self.mean}
        if self.method == "autoencoder":
            for prefix, net in (("", self.encoder), ("decoder_", self.decoder)):
                for i, (w, b) in enumerate(zip(net.weights, net.biases)):
                    arrays[f"{prefix}W{i}"], arrays[f"{prefix}b{i}"] = w, b
            header = {**header, "activations": self.encoder.activations,
                      "decoder_activations": self.decoder.activations}
        else:
            arrays["components"] = self.components
        madefile.write(path, kind=KIND, version=VERSION,
                       header={**header, "method": self.method, "mel": self.settings.as_dict()}, arrays=arrays)

    @classmethod
    def load(cls, path) -> LearnedModel:
        """Read a model written by `cppnviz learn`; one clear MadeFileError for anything else."""
        meta, arrays = madefile.read(path, kind=KIND, versions=(VERSION,))
        try:
            settings = MelSettings(**meta["mel"])
            if meta["method"] == "autoencoder":
                encoder, decoder = (MLP([arrays[f"{prefix}W{i}"] for i in range(len(kinds))],
                                        [arrays[f"{prefix}b{i}"] for i in range(len(kinds))], list(kinds))
                                    for prefix, kinds in (("", meta["activations"]),
                                                          ("decoder_", meta["decoder_activations"])))
                model = cls("autoencoder", settings, encoder=encoder, decoder=decoder, mean=arrays["mean"],
                            header=meta)
                expected = settings.size
                found = encoder.sizes[0]
            else:
                model = cls("pca", settings, mean=arrays["mean"], components=arrays["components"], header=meta)
                expected, found = settings.size, model.components.shape[1]
        except (KeyError, TypeError, ValueError) as exc:
            raise madefile.MadeFileError(f"'{path}' is a damaged {KIND} file (missing or wrong field: {exc})") from None
        if found != expected:
            raise madefile.MadeFileError(f"'{path}' is a damaged {KIND} file: its encoder takes {found} inputs, "
                                         f"its mel settings make {expected}")
        return model
