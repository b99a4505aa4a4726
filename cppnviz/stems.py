"""Stems: several audio_file nodes in one graph, `--audio NAME=FILE` naming the one a file replaces, one run length."""

from __future__ import annotations

import logging
import os
import re

from .errors import GraphError, Problem
from .graph import NODE_NAME, Graph, Link
from .outputs import absolute

log = logging.getLogger("cppnviz")

NAMED = re.compile(r"^([a-z][a-z0-9_]*)=(.+)$")


def audio_overrides(values, nodes: dict) -> list[tuple[str, str, str]]:
    """(node, "path", absolute path) for each --audio: `FILE` (the graph's one audio_file) or `NAME=FILE`.

    `values` is one string or the list argparse collects; every mistake is reported at once.
    """
    values = [values] if isinstance(values, str) else list(values or [])
    files = [n for n, spec in nodes.items() if isinstance(spec, dict) and spec.get("type") == "audio_file"]
    problems, given = [], {}
    for text in values:
        named = NAMED.match(text)
        if named and NODE_NAME.match(named.group(1)):
            name, path = named.groups()
            if name not in files:
                problems.append(Problem(f"--audio {text}", f"no audio_file node named '{name}'; audio_file nodes: "
                                                           f"{', '.join(files) or 'none'}"))
                continue
        elif len(files) == 1:
            name, path = files[0], text
        else:
            hint = "name one: --audio NAME=FILE" if files else "use --set NODE.path=... instead"
            problems.append(Problem(f"--audio {text}", f"needs exactly one audio_file node in the graph, found "
                                                       f"{', '.join(files) or 'none'}; {hint}"))
            continue
        if name in given:
            problems.append(Problem("--audio", f"two files for node '{name}': {given[name]} and {path}"))
            continue
        given[name] = path
    if problems:
        raise GraphError(problems)
    return [(name, "path", absolute(path)) for name, path in given.items()]


def source_counts(graph: Graph, limit: int | None) -> list[int]:
    """Frames each source lasts (at most `limit`); of several audio files only the lead's, the rest padded or cut.

    The lead is the audio_file the encoder's sound comes from (else the longest): the video lasts as long
    as its sound. Every other stem that differs from it in length or rate gets one warning line.
    """
    files = graph.of_type("audio_file")
    counts = [c for n in graph.nodes.values() if n not in files and (c := n.frame_count(limit)) is not None]
    if len(files) <= 1:
        return counts + [f.frame_count(limit) for f in files]
    lengths = {f.name: f.frame_count(limit) for f in files}
    lead = _muxed(graph) or max(lengths, key=lengths.get)
    fps = float(graph.ctx.fps)
    ref = graph.nodes[lead]
    for f in files:
        if f.name == lead:
            continue
        what = []
        if f.program_rate != ref.program_rate:
            what.append(f"its {f.program_rate} Hz resampled to {f.p.sample_rate} Hz for analysis ('{lead}' is "
                        f"{ref.program_rate} Hz)")
        gap = (lengths[lead] - lengths[f.name]) / fps
        if gap > 0:
            what.append(f"padded with {gap:.2f} s of silence to the length of '{lead}' ({lengths[lead] / fps:.2f} s)")
        elif gap < 0:
            what.append(f"its last {-gap:.2f} s cut to the length of '{lead}' ({lengths[lead] / fps:.2f} s)")
        if what:
            log.warning("stem '%s' (%s): %s", f.name, os.path.basename(f.p.path), "; ".join(what))
    return counts + [lengths[lead]]


def _muxed(graph: Graph) -> str | None:
    """The audio_file upstream of the first encoder's audio input, if one is linked."""
    for encoder in graph.of_type("encoder"):
        link = graph.links[encoder.name].get("audio")
        if isinstance(link, Link):
            found = [n for n in graph.upstream(link.node) if graph.nodes[n].type_name == "audio_file"]
            if found:
                return found[0]
    return None
