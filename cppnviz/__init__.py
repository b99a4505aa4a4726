"""cppnviz: audio-reactive CPPN visuals from a small dataflow graph of nodes."""

__version__ = "0.1.0"
