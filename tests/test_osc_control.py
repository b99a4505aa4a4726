"""The OSC layer on real UDP/HTTP sockets on 127.0.0.1: param control, timed bundles, floods, feature output, OSCQuery."""

from __future__ import annotations

import json
import logging
import math
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("pythonosc", reason="python-osc is needed for the OSC layer")

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder  # noqa: E402
from pythonosc.osc_message import OscMessage  # noqa: E402
from pythonosc.osc_message_builder import OscMessageBuilder  # noqa: E402

from cppnviz import registry  # noqa: E402
from cppnviz.errors import CppnvizError  # noqa: E402
from cppnviz.graph import build_graph  # noqa: E402
from cppnviz.host_bridge.osc.control import ParamControl  # noqa: E402
from cppnviz.host_bridge.osc.oscquery import OscQueryServer  # noqa: E402
from cppnviz.host_bridge.osc.sender import FeatureSender  # noqa: E402
from cppnviz.host_bridge.osc.server import OscServer  # noqa: E402
from cppnviz.timebase import Tick  # noqa: E402

CONTROL_LOG = "cppnviz.host_bridge.osc.control"
SERVER_LOG = "cppnviz.host_bridge.osc.server"


# -- fixtures -----------------------------------------------------------------------

def graph_data(osc: dict | None = None) -> dict:
    """A small live-style graph of node types that need no files; a cppn node too when one is registered."""
    nodes = {
        "audio": {"type": "audio_in"},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}},
        "norm": {"type": "normalizer", "params": {"mode": "running_median"}, "inputs": {"features": "bands.bands"}},
        "smooth": {"type": "smoother", "inputs": {"features": "norm.features"}},
    }
    cppn = registry.lookup("cppn")
    if cppn is not None:
        # Wire what we can; a cppn with inputs of other kinds is left out rather than guessed at.
        sources = {"features": "smooth.features", "audio": "audio.audio"}
        if all(i.kind in sources for i in cppn.inputs if i.required):
            nodes["cppn"] = {"type": "cppn", "inputs": {i.name: sources[i.kind] for i in cppn.inputs
                                                        if i.kind in sources}}
    data = {"fps": 60, "nodes": nodes}
    if osc is not None:
        data["osc"] = osc
    return data


@pytest.fixture
def graph(tmp_path):
    return build_graph(graph_data(), base_dir=tmp_path)


@pytest.fixture
def control(graph):
    return ParamControl(graph)


@pytest.fixture
def server(control):
    with OscServer(control, port=0) as srv:
        yield srv


@pytest.fixture
def client():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def message(address: str, *args) -> bytes:
    """An OSC message; each arg is a value or a (value, type tag) pair."""
    builder = OscMessageBuilder(address)
    for arg in args:
        value, tag = arg if isinstance(arg, tuple) else (arg, None)
        builder.add_arg(value, tag)
    return builder.build().dgram


def wait_for(predicate, timeout: float = 2.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def send(client, server, *packets: bytes) -> None:
    """Send packets to the server and wait until it has taken every one in."""
    stats = server.control.stats
    before = stats["received"] + stats["malformed"] + stats["oversized"]
    for packet in packets:
        client.sendto(packet, ("127.0.0.1", server.port))
    wait_for(lambda: stats["received"] + stats["malformed"] + stats["oversized"] >= before + len(packets),
             what=f"the server to take {len(packets)} packet(s)")


def same(got: list, expected: list) -> bool:
    """Equal, with floats compared at OSC's float32 precision."""
    return len(got) == len(expected) and all(
        g == pytest.approx(e, rel=1e-6) if isinstance(e, float) else (g == e and type(g) is type(e))
        for g, e in zip(got, expected))


def reply(client) -> OscMessage:
    data, _ = client.recvfrom(65536)
    return OscMessage(data)


# -- addresses and queries ------------------------------------------------------------

def test_every_param_is_addressable_and_answers_a_query(control, server, client):
    declared = {(n.name, d.name) for n in control.graph.nodes.values() for d in n.params}
    listed = {(node, name) for node, name, _ in control.addresses()}
    assert listed == declared
    for node, name, decl in control.addresses():
        send(client, server, message(f"/{node}/{name}"))
        answer = reply(client)
        assert answer.address == f"/{node}/{name}"
        current = control.value(node, name)
        expected = current if isinstance(current, list) else [current]
        assert same(answer.params, expected), (f"/{node}/{name}", answer.params, expected)
    assert control.stats["query"] == len(declared)
    assert control.stats["rejected"] == 0


def test_query_reply_types_and_norm_query(control, server, client):
    send(client, server, message("/bands/n_mels"))
    data, _ = client.recvfrom(65536)
    assert b",i\x00" in data  # an int param answers with an OSC int
    send(client, server, message("/smooth/zero_lag"))
    assert reply(client).params == [False]
    send(client, server, message("/smooth/time_constant/norm"))
    assert reply(client).params == [pytest.approx(0.3 / 60)]
    send(client, server, message("/bands/align/norm"))  # center: the first of three choices
    assert reply(client).params == [0.0]


# -- accepted values ----------------------------------------------------------------------

@pytest.mark.parametrize("address, arg, param, expected", [
    ("/smooth/alpha", (0.25, "f"), ("smooth", "alpha"), 0.25),
    ("/smooth/alpha", (0.25, "d"), ("smooth", "alpha"), 0.25),
    ("/smooth/time_constant", (2, "i"), ("smooth", "time_constant"), 2.0),  # ints are fine for float params
    ("/bands/n_mels", (24, "i"), ("bands", "n_mels"), 24),
    ("/bands/n_mels", (24.0, "f"), ("bands", "n_mels"), 24),          # an integral float for an int param
    ("/bands/n_mels", (24.0, "d"), ("bands", "n_mels"), 24),
    ("/smooth/zero_lag", (True, "T"), ("smooth", "zero_lag"), True),
    ("/smooth/zero_lag", (False, "F"), ("smooth", "zero_lag"), False),
    ("/smooth/zero_lag", (1, "i"), ("smooth", "zero_lag"), True),     # toggles that send 0/1
    ("/smooth/zero_lag", (0.0, "f"), ("smooth", "zero_lag"), False),
    ("/bands/window", ("none", "s"), ("bands", "window"), "none"),
    ("/norm/gain", (2.0, "f"), ("norm", "gain"), 2.0),
])
def test_osc_types_accepted(control, server, client, address, arg, param, expected):
    if address == "/smooth/zero_lag" and expected is False:
        control.graph.nodes["smooth"].set_param("zero_lag", True)  # so that False is a change
    send(client, server, message(address, arg))
    assert control.apply_pending() == 1
    value = control.value(*param)
    assert value == pytest.approx(expected) and type(value) is type(expected)
    assert control.stats["rejected"] == 0 and control.stats["clamped"] == 0


def test_several_numbers_set_a_floats_param_per_band(control, server, client):
    gains = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    send(client, server, message("/norm/gain", *gains))
    control.apply_pending()
    assert control.value("norm", "gain") == gains


@pytest.mark.parametrize("address, x, param, expected", [
    ("/bands/n_mels/norm", 0.0, ("bands", "n_mels"), 1),
    ("/bands/n_mels/norm", 0.5, ("bands", "n_mels"), 129),          # 1 + 0.5 * 255 = 128.5, halves up
    ("/bands/n_mels/norm", 1.0, ("bands", "n_mels"), 256),
    ("/smooth/time_constant/norm", 0.25, ("smooth", "time_constant"), 15.0),
    ("/smooth/zero_lag/norm", 0.7, ("smooth", "zero_lag"), True),
    ("/smooth/zero_lag/norm", 0.5, ("smooth", "zero_lag"), True),
    ("/bands/align/norm", 0.0, ("bands", "align"), "center"),        # floor(x * 3): center, start, end
    ("/bands/align/norm", 0.33, ("bands", "align"), "center"),
    ("/bands/align/norm", 0.34, ("bands", "align"), "start"),
    ("/bands/align/norm", 0.99, ("bands", "align"), "end"),
    ("/bands/align/norm", 1.0, ("bands", "align"), "end"),
])
def test_norm_maps_zero_one_onto_the_range(control, server, client, address, x, param, expected):
    send(client, server, message(address, (x, "f")))
    control.apply_pending()
    value = control.value(*param)
    assert value == pytest.approx(expected) and type(value) is type(expected)
    assert control.stats["rejected"] == 0 and control.stats["clamped"] == 0


def test_norm_below_half_is_false_for_bools(control):
    control.graph.nodes["smooth"].set_param("zero_lag", True)
    control.handle("/smooth/zero_lag/norm", [0.2])
    control.apply_pending()
    assert control.value("smooth", "zero_lag") is False


# -- clamping and rejection ------------------------------------------------------------------

@pytest.mark.parametrize("address, arg, param, expected", [
    ("/smooth/alpha", (5.0, "f"), ("smooth", "alpha"), 0.9999),
    ("/smooth/time_constant", (-1, "i"), ("smooth", "time_constant"), 0.0),
    ("/bands/n_mels", (1000, "i"), ("bands", "n_mels"), 256),
    ("/smooth/time_constant/norm", (1.5, "f"), ("smooth", "time_constant"), 60.0),
])
def test_out_of_range_is_clamped_and_counted(control, server, client, address, arg, param, expected):
    send(client, server, message(address, arg))
    assert control.apply_pending() == 1
    assert control.value(*param) == pytest.approx(expected)
    assert control.stats["clamped"] == 1 and control.stats["rejected"] == 0


@pytest.mark.parametrize("address, args, shown", [
    ("/smooth/alpha", ["loud"], "'loud'"),                 # a string for a float
    ("/smooth/alpha", [True], "True"),                     # T for a float
    ("/smooth/alpha", [0.1, 0.2], "[0.1, 0.2]"),            # two values for one
    ("/bands/n_mels", [2.5], "2.5"),                       # a fraction for an int
    ("/smooth/zero_lag", [0.5], "0.5"),                    # neither T/F nor 0/1
    ("/bands/window", ["triangle"], "'triangle'"),         # not one of the choices
    ("/bands/window", [1], "1"),                           # an index for a choice (that is what /norm is for)
    ("/bands/window/norm", ["hann"], "'hann'"),            # /norm takes a number
    ("/smooth/alpha/norm", [math.nan], "nan"),
    ("/nowhere/alpha", [0.5], "0.5"),                      # unknown node
    ("/smooth/nothing", [0.5], "0.5"),                     # unknown param
    ("/smooth/alpha/extra/parts", [0.5], "0.5"),
    ("/smooth/*", [0.5], "0.5"),                           # patterns are not expanded
])
def test_wrong_type_or_unknown_address_is_rejected_counted_and_logged(control, caplog, address, args, shown):
    before = control.value("smooth", "alpha")
    with caplog.at_level(logging.WARNING, logger=CONTROL_LOG):
        assert control.handle(address, args) is None
    assert control.stats["rejected"] == 1
    assert control.apply_pending() == 0
    assert control.value("smooth", "alpha") == before
    logged = [r.getMessage() for r in caplog.records if r.name == CONTROL_LOG]
    assert len(logged) == 1 and address in logged[0] and shown in logged[0], logged


def test_unsupported_type_tag_is_rejected_not_read_as_a_query(control, server, client, caplog):
    # ',c' (a char) is a valid OSC tag python-osc cannot decode: it would drop the argument
    # and the message would look like a query.
    packet = b"/smooth/alpha\x00\x00\x00,c\x00\x00\x00\x00\x00A"
    with caplog.at_level(logging.WARNING, logger=CONTROL_LOG):
        send(client, server, packet)
    assert control.stats["rejected"] == 1 and control.stats["query"] == 0
    assert any("/smooth/alpha" in r.getMessage() and "'c'" in r.getMessage() for r in caplog.records)


def test_rejections_in_a_flood_are_logged_a_few_times_with_a_count(control, caplog):
    with caplog.at_level(logging.WARNING, logger=CONTROL_LOG):
        for _ in range(1000):
            control.handle("/nowhere/x", [1])
    assert control.stats["rejected"] == 1000
    assert 1 <= len([r for r in caplog.records if r.name == CONTROL_LOG]) <= 10


def test_a_value_the_node_refuses_is_rejected_and_the_old_value_kept(control, caplog):
    # 1025 is within n_fft's declared range, but stft_bands' configure() wants an even size.
    control.handle("/bands/n_fft", [1025])
    control.handle("/smooth/alpha", [0.5])
    with caplog.at_level(logging.WARNING, logger=CONTROL_LOG):
        assert control.apply_pending() == 1
    assert control.value("bands", "n_fft") == 2048
    assert control.value("smooth", "alpha") == 0.5
    assert control.stats["rejected"] == 1
    assert any("/bands/n_fft" in r.getMessage() and "1025" in r.getMessage() for r in caplog.records)


# -- queueing and timing ------------------------------------------------------------------------

def test_changes_wait_for_apply_pending_and_coalesce(control, server, client):
    send(client, server, message("/smooth/alpha", 0.1), message("/norm/gate", 0.5),
         message("/smooth/alpha", 0.2), message("/smooth/alpha", 0.3))
    assert control.value("smooth", "alpha") == 0.0 and control.value("norm", "gate") == 0.0
    assert control.pending() == 2
    assert control.apply_pending() == 2
    assert control.value("smooth", "alpha") == pytest.approx(0.3)
    assert control.value("norm", "gate") == 0.5
    assert control.stats["coalesced"] == 2 and control.stats["applied"] == 2
    assert control.apply_pending() == 0


def test_resending_the_current_value_is_not_a_change(control):
    # A held fader resends its value: the node is not reconfigured for it.
    control.handle("/smooth/time_constant", [0.3])   # the value it already has
    assert control.apply_pending() == 0
    control.handle("/smooth/time_constant", [0.5])
    assert control.apply_pending() == 1
    assert control.stats["unchanged"] == 1 and control.stats["applied"] == 1


def test_future_bundle_applies_at_its_time_and_not_before(control, server, client):
    due = time.time() + 0.5
    bundle = OscBundleBuilder(due)
    bundle.add_content(_msg("/smooth/alpha", 0.75))
    started = time.monotonic()
    send(client, server, bundle.build().dgram, message("/norm/gate", 2.0))
    # The server did not sleep on the bundle: the message sent after it was taken in at once.
    assert time.monotonic() - started < 0.3
    t0 = time.perf_counter()
    assert control.apply_pending(now=due - 0.05) == 1  # only the untimed gate change
    assert time.perf_counter() - t0 < 0.05
    assert control.value("norm", "gate") == 2.0 and control.value("smooth", "alpha") == 0.0
    assert control.apply_pending(now=due - 0.001) == 0
    assert control.apply_pending(now=due + 0.001) == 1
    assert control.value("smooth", "alpha") == pytest.approx(0.75)
    assert control.pending() == 0


def test_future_bundle_applies_in_real_time(control, server, client):
    bundle = OscBundleBuilder(time.time() + 0.2)
    bundle.add_content(_msg("/smooth/alpha", 0.5))
    send(client, server, bundle.build().dgram)
    assert control.apply_pending() == 0
    wait_for(lambda: control.apply_pending() == 1, timeout=2.0, what="the timed change")
    assert control.value("smooth", "alpha") == 0.5


@pytest.mark.parametrize("timetag", [IMMEDIATELY, "past"])
def test_immediate_or_past_bundles_are_due_now(control, server, client, timetag):
    bundle = OscBundleBuilder(time.time() - 10 if timetag == "past" else timetag)
    bundle.add_content(_msg("/smooth/alpha", 0.5))
    bundle.add_content(_msg("/bands/n_mels", 12))
    send(client, server, bundle.build().dgram)
    assert control.apply_pending() == 2
    assert control.value("smooth", "alpha") == 0.5 and control.value("bands", "n_mels") == 12


def test_nested_immediate_bundle_inherits_the_outer_time(control, server, client):
    due = time.time() + 30
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(_msg("/smooth/alpha", 0.5))
    outer = OscBundleBuilder(due)
    outer.add_content(inner.build())
    send(client, server, outer.build().dgram)
    assert control.apply_pending() == 0
    assert control.apply_pending(now=due + 0.01) == 1


def test_timed_queue_is_bounded(control):
    control.max_timed = 10
    base = time.time() + 60
    for i in range(25):
        control.handle("/smooth/alpha", [0.01 * i], timetag=base + i)
    assert control.pending() == 10 and control.stats["dropped"] == 15
    assert control.apply_pending(now=base + 100) == 1  # all the same param: the latest arrival wins
    assert control.value("smooth", "alpha") == pytest.approx(0.24)


def _msg(address, value):
    builder = OscMessageBuilder(address)
    builder.add_arg(value)
    return builder.build()


# -- robustness ---------------------------------------------------------------------------------

def test_malformed_and_oversized_packets_are_counted_and_the_server_keeps_working(control, server, client, caplog):
    good = message("/smooth/alpha", 0.5)
    garbage = [
        b"hello",                                   # neither message nor bundle
        b"/smooth/alpha\x00\x00\x00,i\x00\x00\x00\x01",  # int cut short
        b"/smooth/alpha\x00\x00\x00f\x00\x00\x00",      # type tags without the comma
        b"#bundle\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x40/x",  # element longer than the packet
        b"/sm\xffoth\x00\x00\x00\x00",               # address not UTF-8
        b"/smooth/alpha\x00\x00\x00,[f\x00" + struct.pack(">f", 1.0),  # array never closed
    ]
    oversized = message("/smooth/alpha", "x" * 9000)
    with caplog.at_level(logging.WARNING, logger=SERVER_LOG):
        send(client, server, *garbage, oversized, good)
    assert control.stats["malformed"] == len(garbage)
    assert control.stats["oversized"] == 1
    assert control.stats["errors"] == 0
    assert control.apply_pending() == 1 and control.value("smooth", "alpha") == 0.5
    logged = [r.getMessage() for r in caplog.records if r.name == SERVER_LOG]
    # Logged, but rate-limited: a flood of garbage must not become a flood of log lines.
    assert 1 <= sum("malformed OSC packet" in m and "127.0.0.1" in m for m in logged) <= len(garbage)
    assert any("limit 8192" in m for m in logged)


def test_restart_on_the_same_port_right_after_close(control, client):
    first = OscServer(control, port=0)
    port = first.port
    with first:
        send(client, first, message("/smooth/alpha", 0.1))
    with OscServer(control, port=port) as second:
        assert second.port == port
        send(client, second, message("/smooth/alpha", 0.2))
    control.apply_pending()
    assert control.value("smooth", "alpha") == pytest.approx(0.2)


def test_a_busy_port_is_a_clear_error_and_never_steals_packets(control, server, client):
    with pytest.raises(CppnvizError, match=f"cannot listen for OSC on 127.0.0.1:{server.port}"):
        OscServer(control, port=server.port)
    send(client, server, message("/smooth/alpha", 0.5))  # the first server still gets everything
    assert control.apply_pending() == 1


def test_close_is_prompt(control):
    srv = OscServer(control, port=0)
    srv.start()
    started = time.monotonic()
    srv.close()
    assert time.monotonic() - started < 1.0


FLOOD_SENDER = r"""
import socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
head = b"/smooth/alpha\x00\x00\x00,f\x00\x00"
packets = [head + struct.pack(">f", 0.9 * (i + 1) / n) for i in range(n)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# The flood the issue names: 10,000 messages in one second, sent in bursts of 100 every 10 ms.
start = time.perf_counter()
for i in range(0, n, 100):
    for p in packets[i:i + 100]:
        sock.sendto(p, ("127.0.0.1", port))
    time.sleep(max(0.0, start + (i + 100) / n - time.perf_counter()))
"""


def test_a_flood_never_stalls_the_render_loop(control, server):
    """10,000 messages in a second from another process while a 60 fps frame clock applies changes."""
    n, fps = 10_000, 60
    sender = subprocess.Popen([sys.executable, "-c", FLOOD_SENDER, str(server.port), str(n)])
    frames, lateness = 0, []
    started = time.perf_counter()
    quiet_since = None
    seen = -1
    try:
        # Paced like a real frame clock: frame k is due at start + k/fps, so a hiccup is made up
        # afterwards instead of slowing every later frame.
        while time.perf_counter() - started < 15:
            lateness.append(time.perf_counter() - (started + frames / fps))
            control.apply_pending()
            frames += 1
            time.sleep(max(0.0, started + frames / fps - time.perf_counter()))
            now = time.perf_counter()
            received = control.stats["received"]
            if sender.poll() is not None and received == seen:
                quiet_since = quiet_since or now
                if received >= n or now - quiet_since > 0.5:
                    break
            else:
                quiet_since = None
            seen = received
    finally:
        sender.wait(timeout=10)
    elapsed = time.perf_counter() - started
    control.apply_pending()
    assert sender.returncode == 0
    # Frames kept flowing at the graph's fps through the flood: a server thread that hogged the
    # interpreter, or slept on timed bundles, would leave frames seconds late.
    assert frames >= 0.9 * fps * elapsed, f"{frames} frames in {elapsed:.2f} s; stats {control.stats}"
    assert max(lateness) < 0.25, f"a frame started {max(lateness) * 1000:.0f} ms late; stats {control.stats}"
    assert control.value("smooth", "alpha") == pytest.approx(0.9, rel=1e-6), control.stats
    assert control.stats["received"] == n, control.stats
    assert control.pending() == 0


# -- feature output --------------------------------------------------------------------------------

def collect(sock, count: int) -> list[OscMessage]:
    out = []
    while len(out) < count:
        data, _ = sock.recvfrom(65536)
        out.append(OscMessage(data))
    return out


def test_feature_sender_messages(tmp_path, client):
    port = client.getsockname()[1]
    graph = build_graph(graph_data({"send": ["smooth.features"], "to": [f"127.0.0.1:{port}"]}), base_dir=tmp_path)
    outputs = [(link.node, link.port) for link in graph.osc_send]
    assert outputs == [("smooth", "features")]
    vector = np.array([0.0, 0.25, 0.5, 1.0, 2.0, -1.0, 3.5], dtype=np.float32)
    with FeatureSender(graph, outputs, graph.osc_to) as sender:
        sender.send(Tick(5, 5 / 60), {("smooth", "features"): vector})
        got = collect(client, 2 + vector.size)
        assert sender.stats == {"sent": 2 + vector.size, "errors": 0}
    by_address = {m.address: m.params for m in got}
    assert got[0].address == "/cppnviz/frame"
    assert by_address["/cppnviz/frame"] == [5, pytest.approx(5 / 60)]
    assert by_address["/smooth/features"] == pytest.approx(vector.tolist())
    for i, v in enumerate(vector):
        assert by_address[f"/smooth/features/{i}"] == [pytest.approx(float(v))]
    assert len(by_address) == 2 + vector.size


def test_feature_sender_takes_numpy_float64_and_survives_a_closed_port(graph, client):
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    port = client.getsockname()[1]
    with FeatureSender(graph, [("bands", "bands")], [("127.0.0.1", closed_port), ("localhost", port)]) as sender:
        for k in range(3):  # a refused port reports on the following sends: keep going
            sender.send(Tick(k, k / 60), {("bands", "bands"): np.float64([1.5, 2.5])})
        got = collect(client, 3 * 4)
    assert [m.params for m in got if m.address == "/bands/bands"] == [[1.5, 2.5]] * 3
    assert [m.params for m in got if m.address == "/cppnviz/frame"][-1] == [2, pytest.approx(2 / 60)]


def test_feature_sender_checks_outputs_and_destinations(graph):
    with pytest.raises(CppnvizError, match="smooth.nothing"):
        FeatureSender(graph, [("smooth", "nothing")], [("127.0.0.1", 9001)])
    with pytest.raises(CppnvizError, match="cannot resolve"):
        FeatureSender(graph, [("smooth", "features")], [("no-such-host.invalid", 9001)])


# -- OSCQuery ---------------------------------------------------------------------------------------

def get(port: int, path: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            body = resp.read()
            return resp.status, (json.loads(body) if body else None)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def oscquery(control):
    with OscQueryServer(control, port=0, osc_port=9123, name="cppnviz-test") as q:
        yield q


def test_oscquery_tree_has_every_param(control, oscquery):
    status, tree = get(oscquery.port, "/")
    assert status == 200 and tree["FULL_PATH"] == "/"
    tags = {"float": "f", "int": "i", "bool": "T", "str": "s", "path": "s", "choice": "s"}
    for node, name, decl in control.addresses():
        entry = tree["CONTENTS"][node]["CONTENTS"][name]
        value = control.value(node, name)
        values = value if isinstance(value, list) else [value]
        assert entry["FULL_PATH"] == f"/{node}/{name}"
        assert entry["VALUE"] == values
        assert entry["TYPE"] == ("f" * len(values) if decl.type == "floats" else tags[decl.type])
        assert entry["ACCESS"] == 3
        assert entry["DESCRIPTION"] == decl.doc
        if decl.type == "choice":
            assert entry["RANGE"] == [{"VALS": list(decl.choices)}]
        elif decl.min is not None and decl.max is not None:
            assert entry["RANGE"] == [{"MIN": decl.min, "MAX": decl.max}] * len(values)
            assert entry["CLIPMODE"] == ["both"] * len(values)
        if decl.unit:
            assert entry["UNIT"] == [decl.unit] * len(values)
        else:
            assert "UNIT" not in entry


def test_oscquery_value_follows_applied_changes(control, oscquery):
    assert get(oscquery.port, "/smooth/alpha?VALUE") == (200, {"VALUE": [0.0]})
    control.handle("/smooth/alpha", [0.5])
    assert get(oscquery.port, "/smooth/alpha?VALUE") == (200, {"VALUE": [0.0]})  # queued, not applied
    control.apply_pending()
    assert get(oscquery.port, "/smooth/alpha?VALUE") == (200, {"VALUE": [0.5]})
    status, node = get(oscquery.port, "/smooth")
    assert status == 200 and node["CONTENTS"]["alpha"]["VALUE"] == [0.5]


def test_oscquery_host_info(oscquery):
    status, info = get(oscquery.port, "/?HOST_INFO")
    assert status == 200
    assert info["NAME"] == "cppnviz-test"
    assert info["OSC_IP"] == "127.0.0.1" and info["OSC_PORT"] == 9123 and info["OSC_TRANSPORT"] == "UDP"
    assert all(info["EXTENSIONS"][k] for k in ("ACCESS", "VALUE", "RANGE", "DESCRIPTION"))


def test_oscquery_errors(oscquery):
    assert get(oscquery.port, "/nowhere")[0] == 404
    assert get(oscquery.port, "/smooth/nothing")[0] == 404
    assert get(oscquery.port, "/smooth/alpha/deeper")[0] == 404
    assert get(oscquery.port, "/smooth/alpha?BOGUS")[0] == 400
    assert get(oscquery.port, "/smooth/zero_lag?UNIT") == (204, None)   # no unit
    assert get(oscquery.port, "/?VALUE") == (204, None)                 # a container has no value
    assert get(oscquery.port, "/smooth/alpha?RANGE") == (200, {"RANGE": [{"MIN": 0, "MAX": 0.9999}]})


def test_oscquery_is_not_announced_from_loopback(control):
    with OscQueryServer(control, port=0) as q:
        assert q.advertise is False  # mDNS for a server only this machine can reach would mislead


def test_oscquery_service_record(control):
    pytest.importorskip("zeroconf", reason="zeroconf (optional) is not installed")
    with OscQueryServer(control, port=0, name="show") as q:
        info = q.service_info()  # built, not registered: no multicast from a test
        assert info.type == "_oscjson._tcp.local." and info.name == "show._oscjson._tcp.local."
        assert info.port == q.port


def test_oscquery_restart_on_the_same_port(control):
    with OscQueryServer(control, port=0) as q:
        port = q.port
        assert get(port, "/?HOST_INFO")[0] == 200
    with OscQueryServer(control, port=port) as q:
        assert get(port, "/?HOST_INFO")[0] == 200
