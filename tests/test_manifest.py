"""plugin.yaml is generated from the node classes, is current, and names every documented param."""

from pathlib import Path

import yaml

from conftest import run_cli
from cppnviz import manifest

ROOT = Path(__file__).resolve().parent.parent

# Every param the offline-renderer issue names, per node type.
DOCUMENTED = {
    "audio_file": {"path", "sample_rate", "normalize"},
    "stft_bands": {"n_fft", "window", "scale", "bands", "edges", "n_mels", "align"},
    "normalizer": {"mode", "window", "gain", "eps", "gate"},
    "smoother": {"alpha", "time_constant", "attack", "release", "zero_lag"},
    "cppn": {"width", "height", "layers", "hidden", "seed", "activation", "output", "mapping", "scale",
             "aspect", "vignette", "period", "weights"},
    "tiler": {"tile_size", "layout", "radius_gain", "background"},
    "spectrum_meter": {"width", "height"},
    "encoder": {"path", "format", "crf", "preset"},
}


def test_plugin_yaml_is_current():
    assert (ROOT / "plugin.yaml").read_text() == manifest.manifest_text(), \
        "plugin.yaml is stale: run `cppnviz manifest > plugin.yaml`"


def test_manifest_command_prints_it():
    result = run_cli("manifest")
    assert result.returncode == 0 and result.stdout == manifest.manifest_text()


def test_every_documented_param_is_declared_with_a_doc():
    nodes = yaml.safe_load(manifest.manifest_text())["nodes"]
    for type_name, params in DOCUMENTED.items():
        assert type_name in nodes, f"node type {type_name} missing"
        declared = nodes[type_name]["params"]
        assert params <= set(declared), f"{type_name}: missing {params - set(declared)}"
        for name in params:
            assert declared[name]["doc"], f"{type_name}.{name} has no doc"
