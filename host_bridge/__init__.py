"""Adapters to the outside world: OSC and TouchDesigner (installed as cppnviz.host_bridge)."""
