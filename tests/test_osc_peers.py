"""The OSC layer against peers we did not write: liblo's oscsend/oscdump and Pure Data, on 127.0.0.1."""

from __future__ import annotations

import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pythonosc", reason="python-osc is needed for the OSC layer")

from cppnviz import registry  # noqa: E402
from cppnviz.graph import build_graph  # noqa: E402
from cppnviz.host_bridge.osc.control import ParamControl  # noqa: E402
from cppnviz.host_bridge.osc.sender import FeatureSender  # noqa: E402
from cppnviz.host_bridge.osc.server import OscServer  # noqa: E402
from cppnviz.timebase import Tick  # noqa: E402

PATCH = Path(__file__).resolve().parent.parent / "examples" / "puredata" / "cppnviz_control.pd"
CONTROL_LOG = "cppnviz.host_bridge.osc.control"

needs_oscsend = pytest.mark.skipif(shutil.which("oscsend") is None,
                                   reason="oscsend not found (Debian package liblo-tools)")
needs_oscdump = pytest.mark.skipif(shutil.which("oscdump") is None,
                                   reason="oscdump not found (Debian package liblo-tools)")
HAS_CPPN = registry.lookup("cppn") is not None
needs_cppn = pytest.mark.skipif(not HAS_CPPN, reason="no cppn node type is registered")
needs_pd = pytest.mark.skipif(shutil.which("pd") is None,
                              reason="Pure Data not found (Debian package puredata-core)")


@pytest.fixture
def graph(tmp_path):
    nodes = {
        "audio": {"type": "audio_in"},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}},
        "norm": {"type": "normalizer", "params": {"mode": "running_median"}, "inputs": {"features": "bands.bands"}},
        "smooth": {"type": "smoother", "inputs": {"features": "norm.features"}},
    }
    if HAS_CPPN:
        nodes["cppn"] = {"type": "cppn", "inputs": {"features": "smooth.features"}}
    return build_graph({"fps": 60, "nodes": nodes}, base_dir=tmp_path)


@pytest.fixture
def control(graph):
    return ParamControl(graph)


@pytest.fixture
def server(control):
    with OscServer(control, port=0) as srv:
        yield srv


def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- liblo: oscsend drives params ---------------------------------------------------------

@needs_oscsend
@pytest.mark.parametrize("args, param, expected", [
    (["/bands/n_mels", "i", "42"], ("bands", "n_mels"), 42),
    (["/smooth/time_constant/norm", "f", "0.5"], ("smooth", "time_constant"), 30.0),
    (["/smooth/alpha", "d", "0.25"], ("smooth", "alpha"), 0.25),
    (["/smooth/zero_lag", "T"], ("smooth", "zero_lag"), True),
    (["/bands/window", "s", "none"], ("bands", "window"), "none"),
    (["/bands/align/norm", "f", "0.5"], ("bands", "align"), "start"),
    pytest.param(["/cppn/seed", "i", "42"], ("cppn", "seed"), 42, marks=needs_cppn),
    # 0.5 of 0..2147483647 is 1073741823.5, and halves round up.
    pytest.param(["/cppn/seed/norm", "f", "0.5"], ("cppn", "seed"), 1073741824, marks=needs_cppn),
])
def test_oscsend_drives_a_param(control, server, args, param, expected):
    subprocess.run(["oscsend", "127.0.0.1", str(server.port), *args], check=True, timeout=10)
    wait_for(lambda: control.stats["received"] == 1, what="oscsend's message")
    assert control.value(*param) != expected  # nothing changes before the tick
    # A cppn's network is rebuilt off the render thread: wait for it to be swapped in.
    assert control.apply_pending(wait=30) == 1
    assert control.value(*param) == pytest.approx(expected)
    assert control.stats["rejected"] == 0 and control.stats["malformed"] == 0


@needs_oscsend
def test_oscsend_out_of_range_and_wrong_type(control, server, caplog):
    subprocess.run(["oscsend", "127.0.0.1", str(server.port), "/smooth/alpha", "f", "7"], check=True, timeout=10)
    subprocess.run(["oscsend", "127.0.0.1", str(server.port), "/bands/n_mels", "s", "many"], check=True, timeout=10)
    # The server handles messages in order, and a rejection is counted after it is logged.
    wait_for(lambda: control.stats["rejected"] == 1, what="oscsend's messages")
    control.apply_pending()
    assert control.value("smooth", "alpha") == pytest.approx(0.9999)
    assert control.value("bands", "n_mels") == 16
    assert control.stats["clamped"] == 1 and control.stats["rejected"] == 1
    assert any("/bands/n_mels" in r.getMessage() and "'many'" in r.getMessage()
               for r in caplog.records if r.name == CONTROL_LOG)


# -- liblo: oscdump receives the feature output ----------------------------------------------------

LINE = re.compile(r"^[0-9a-f]+\.[0-9a-f]+ (\S+) (\S+)(.*)$")


def start_oscdump() -> tuple[subprocess.Popen, int]:
    """oscdump on a free port; a port taken between our check and its bind is retried."""
    for _ in range(5):
        port = free_udp_port()
        # -L: line-buffered even into a pipe, so lines arrive as messages do.
        proc = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        if proc.poll() is None:
            return proc, port
    raise AssertionError(f"oscdump could not start: {proc.stderr.read()}")


@needs_oscdump
def test_oscdump_receives_feature_messages(graph):
    proc, port = start_oscdump()
    incoming: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [incoming.put(line.rstrip("\n")) for line in proc.stdout], daemon=True)
    reader.start()
    vector = np.array([0.125, 0.5, 1.0, 2.0, 0.0, 3.25, 0.75], dtype=np.float32)
    seen: list[str] = []
    try:
        with FeatureSender(graph, [("smooth", "features")], [("127.0.0.1", port)]) as sender:
            # oscdump prints nothing when it is ready: send frames until a whole one shows up.
            deadline = time.monotonic() + 10
            k = 0
            while not any(" /smooth/features " in line for line in seen):
                assert time.monotonic() < deadline, f"oscdump printed {seen!r}"
                sender.send(Tick(k, k / 60), {("smooth", "features"): vector})
                k += 1
                try:
                    while True:
                        seen.append(incoming.get(timeout=0.1))
                except queue.Empty:
                    pass
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    parsed = {}
    for line in seen:
        m = LINE.match(line)
        assert m, f"unexpected oscdump line {line!r}"
        parsed[m.group(1)] = (m.group(2), m.group(3).split())
    tags, values = parsed["/smooth/features"]
    assert tags == "f" * vector.size
    assert [float(v) for v in values] == pytest.approx(vector.tolist(), abs=1e-6)
    for i, v in enumerate(vector):
        assert parsed[f"/smooth/features/{i}"][0] == "f"
        assert float(parsed[f"/smooth/features/{i}"][1][0]) == pytest.approx(float(v), abs=1e-6)
    frame_tags, (frame, seconds) = parsed["/cppnviz/frame"]
    assert frame_tags == "if" and int(frame) >= 0 and float(seconds) == pytest.approx(int(frame) / 60, abs=1e-5)


# -- Pure Data: the example patch sends to our server -------------------------------------------------

@needs_pd
def test_pure_data_patch_drives_params(control, server, caplog):
    sends = [
        f"cppnviz_port {server.port}",
        "cppnviz_send /smooth/alpha 0.25",
        "cppnviz_int /bands/n_mels 42",
        "cppnviz_send /bands/window none",
        "cppnviz_send /smooth/time_constant/norm 0.5",
        "cppnviz_demo bang",   # /cppn/hidden 32 and /cppn/seed/norm 0.5
        "pd quit",
    ]
    cmd = ["pd", "-nogui", "-nosound", "-nomidi", "-noprefs", "-stderr", "-open", str(PATCH)]
    for s in sends:
        cmd += ["-send", s]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower(), done.stderr
    wait_for(lambda: control.stats["received"] == 6, what=f"Pd's 6 messages (stats {control.stats})")
    control.apply_pending(wait=30)
    assert control.value("smooth", "alpha") == 0.25
    assert control.value("bands", "n_mels") == 42
    assert control.value("bands", "window") == "none"
    assert control.value("smooth", "time_constant") == pytest.approx(30.0)
    assert control.stats["malformed"] == 0
    if HAS_CPPN:
        assert control.value("cppn", "hidden") == 32
        assert control.value("cppn", "seed") == 1073741824
        assert control.stats["rejected"] == 0
    else:
        # Without a cppn node the demo's messages still arrive intact, and are rejected by name.
        logged = " ".join(r.getMessage() for r in caplog.records if r.name == CONTROL_LOG)
        assert "/cppn/hidden 32" in logged and "/cppn/seed/norm 0.5" in logged
        assert control.stats["rejected"] == 2
