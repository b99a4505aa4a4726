"""The node library: one module per node family, found by the registry (installed as cppnviz.nodes)."""
