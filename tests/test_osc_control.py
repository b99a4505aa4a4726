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
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tone
from frame_clock import describe, own_figures, run_frames

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
from cppnviz.host_bridge.osc import udp_buffer  # noqa: E402
from cppnviz.host_bridge.osc.server import OscServer, newest_per_address  # noqa: E402
from cppnviz.live import settled_heap  # noqa: E402
from cppnviz.runner import Scheduler  # noqa: E402
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


BURST_SENDER = r"""
import socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
head = b"/smooth/alpha\x00\x00\x00,f\x00\x00"
packets = [head + struct.pack(">f", 0.9 * (i + 1) / n) for i in range(n)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("ready", flush=True)
sys.stdin.readline()   # a controller is a program already running: its start-up is not the burst
# As fast as a socket can: the issue's burst (0.07 s for 10,000 on its machine).
start = time.perf_counter()
for p in packets:
    sock.sendto(p, ("127.0.0.1", port))
print(time.perf_counter() - start)
"""


def test_a_burst_of_10000_messages_keeps_frames_on_time(control, server):
    """The issue's burst: 10,000 messages as fast as a socket can, while a real graph makes frames at 60 fps.

    During it and for a second after the server took the last one in: at least 95 % of frames
    shown and none ready more than 50 ms after its time, beyond what the kernel kept the render
    threads waiting for a CPU (other programs on a shared machine; see frame_clock.py). Every
    message is counted, and the last one sent is the one applied when the receive buffer held them.
    """
    n, fps, warm = 10_000, 60, 30
    scheduler = Scheduler(control.graph)
    for node in control.graph.nodes.values():
        node.reset()
    stats = control.stats
    sender = subprocess.Popen([sys.executable, "-c", BURST_SENDER, str(server.port), str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sender.stdout.readline() == "ready\n"
    went, taken, deadline = [], [], time.monotonic() + 30

    def work(k: int) -> None:
        control.apply_pending()
        scheduler.step(k)

    def done(k: int) -> bool:
        if k >= warm and not went:   # the first frames (caches, thread pools) are not timed: then the burst
            sender.stdin.write("go\n")
            sender.stdin.flush()
            went.append(k)
        if not taken and sender.poll() is not None and stats["received"] + stats["overflow"] >= n:
            taken.append(time.monotonic())
        return (bool(taken) and time.monotonic() > taken[0] + 1.0) or time.monotonic() > deadline

    try:
        with settled_heap():   # as the live loop runs
            frames = run_frames(work, fps, done)
    finally:
        sending_s = float(sender.communicate(timeout=30)[0] or "nan")
    assert sender.returncode == 0 and taken, f"the server took {stats['received']} of {n}; stats {stats}"
    frames = [f for f in frames if f.k >= went[0]]     # from the frame the burst started at
    latest, dropped, due = own_figures(frames, fps)
    figures = f"{describe(frames, fps)}; burst sent in {sending_s:.3f} s; stats {stats}"
    assert dropped <= 0.05 * due, figures
    assert latest <= 0.050, figures
    assert stats["received"] + stats["overflow"] == n, figures
    assert stats["received"] == stats["applied"] + stats["coalesced"] + stats["unchanged"], figures
    if stats["overflow"] == 0:
        assert control.value("smooth", "alpha") == pytest.approx(0.9, rel=2**-23), figures
    assert control.pending() == 0


def test_what_the_kernel_drops_is_counted_and_logged(control, caplog):
    """A receive buffer too small for a burst: the datagrams Linux dropped are counted, the rest handled."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        if udp_buffer.dropped(probe) is None:
            pytest.skip("the kernel's drop count is read from Linux's /proc/net/udp")
    n = 2000
    srv = OscServer(control, port=0, receive_buffer=4096)   # room for a handful of datagrams
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for i in range(n):   # before the server reads anything: the buffer overflows
            out.sendto(message("/smooth/alpha", (0.5 * (i + 1) / n, "f")), ("127.0.0.1", srv.port))
    with caplog.at_level(logging.WARNING, logger=SERVER_LOG), srv:
        wait_for(lambda: control.stats["received"] + control.stats["overflow"] == n, timeout=5,
                 what=f"every datagram accounted for (stats {control.stats})")
    assert 0 < control.stats["overflow"] < n and control.stats["malformed"] == 0
    assert any("receive buffer full" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)
    assert f"{control.stats['overflow']} dropped (" in control.summary()


def test_without_the_privilege_to_pass_the_cap_the_buffer_is_the_cap(monkeypatch):
    cap = Path("/proc/sys/net/core/rmem_max")
    if not cap.exists():
        pytest.skip("the cap is Linux's net.core.rmem_max")
    monkeypatch.setattr(udp_buffer, "SO_RCVBUFFORCE", None)   # as an unprivileged process
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # Linux doubles what it grants (half is its bookkeeping), up to twice the cap.
        assert udp_buffer.enlarge(sock, 64 << 20) == 2 * min(64 << 20, int(cap.read_text()))


def test_only_well_formed_one_number_messages_are_coalesced_by_the_server():
    one = [message("/a", (0.1, "f")), message("/a", (2, "i")), message("/b", True), message("/a", (0.3, "d"))]
    query, bundle, text = message("/a"), _bundle(message("/a", 0.5)), message("/a", "x")
    cut = message("/a", (0.7, "f"))[:-1]
    batch = [(d, None) for d in [one[0], query, one[1], bundle, text, one[2], cut, one[3]]]
    assert [d for d, _ in newest_per_address(batch)] == [query, bundle, text, one[2], cut, one[3]]


def _bundle(*messages: bytes) -> bytes:
    """An immediate bundle of message datagrams, put together by hand (python-osc would parse them)."""
    return b"#bundle\x00" + b"\x00" * 7 + b"\x01" + b"".join(struct.pack(">i", len(m)) + m for m in messages)


# -- what a show refuses, and what it says ---------------------------------------------------------

def test_a_file_param_cannot_change_while_running(tmp_path, caplog):
    write_tone(tmp_path / "song.wav")
    data = {"fps": 60, "nodes": {"audio": {"type": "audio_file", "params": {"path": "song.wav"}},
                                 "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}}}}
    control = ParamControl(build_graph(data, base_dir=tmp_path))
    before = control.value("audio", "path")
    with caplog.at_level(logging.WARNING, logger=CONTROL_LOG):
        assert control.handle("/audio/path", ["other.wav"]) is None
    assert control.apply_pending() == 0 and control.value("audio", "path") == before
    assert control.stats["rejected"] == 1 and control.pending() == 0
    logged = [r.getMessage() for r in caplog.records if r.name == CONTROL_LOG]
    assert len(logged) == 1 and "/audio/path 'other.wav'" in logged[0] and "restart" in logged[0], logged
    assert control.handle("/audio/path", []) == [before]    # still answers a query


def test_the_first_rejection_of_each_kind_is_logged_even_in_a_flood(tmp_path, caplog):
    write_tone(tmp_path / "song.wav")
    data = {"fps": 60, "nodes": {"audio": {"type": "audio_file", "params": {"path": "song.wav"}},
                                 "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}}}}
    control = ParamControl(build_graph(data, base_dir=tmp_path))
    with caplog.at_level(logging.WARNING, logger=CONTROL_LOG):
        for _ in range(1000):
            control.handle("/nowhere/x", [1])
        control.handle("/audio/path", ["other.wav"])
        control.handle("/bands/n_fft", ["big"])
        control.handle("/bands/n_fft", [1025])      # a valid number the node refuses (odd)
        control.apply_pending()
    logged = " | ".join(r.getMessage() for r in caplog.records if r.name == CONTROL_LOG)
    for first in ("/nowhere/x 1", "/audio/path 'other.wav'", "/bands/n_fft 'big'", "/bands/n_fft 1025"):
        assert first in logged, logged
    assert control.stats["rejected"] == 1003


def test_the_summary_line_counts_every_outcome(control):
    control.handle("/smooth/alpha", [0.1])
    control.handle("/smooth/alpha", [0.2])       # replaces the first before its tick
    control.handle("/nowhere", [1])
    control.handle("/smooth/alpha/norm", [2.0])  # clamped, and replaces the second
    control.superseded(3)                        # three the server left unread
    control.apply_pending()
    assert control.summary() == ("OSC in: 7 received, 1 applied, 5 coalesced, 1 rejected, 0 dropped, 1 clamped")


# -- log-scaled params ---------------------------------------------------------------------------------

def _log_roundtrip_bound(decl) -> float:
    """Relative error of value -> fraction -> value in float64 for a log param.

    fraction = ln(v/min) / ln(max/min) carries an absolute error of a few units of 2**-53 times
    (1 + |ln v| + |ln min| + |ln max|); value = exp(ln min + fraction * ln(max/min)) turns an
    absolute error e in its exponent into a relative error e, plus its own rounding. Eight such
    terms bound it with room.
    """
    logs = 1 + abs(math.log(decl.min)) + abs(math.log(decl.max))
    return 8 * logs * 2**-53


@pytest.mark.parametrize("type_name, param", [("cppn", "scale"), ("spectrum_meter", "max_value")])
def test_log_params_place_their_default_mid_fader_and_round_trip(type_name, param):
    decl = registry.lookup(type_name).param(param)
    assert decl.scale == "log"
    # The geometric middle of the range sits mid-fader: cppn scale 0.01..100 puts 1.0 at 0.5.
    middle = math.sqrt(decl.min * decl.max)
    assert decl.fraction(middle) == pytest.approx(0.5, abs=4 * _log_roundtrip_bound(decl))
    assert decl.normalized(0.0) == pytest.approx(decl.min, rel=_log_roundtrip_bound(decl))
    assert decl.normalized(1.0) == pytest.approx(decl.max, rel=_log_roundtrip_bound(decl))
    for value in np.geomspace(decl.min, decl.max, 41):
        value = float(value)
        back = decl.normalized(decl.fraction(value))
        assert back == pytest.approx(value, rel=_log_roundtrip_bound(decl)), value
    # Evenly spaced fader positions are evenly spaced ratios.
    steps = [decl.normalized(x) for x in (0.25, 0.5, 0.75)]
    assert steps[1] / steps[0] == pytest.approx(steps[2] / steps[1], rel=4 * _log_roundtrip_bound(decl))


def test_log_norm_over_osc_and_its_query(control, server, client):
    if "cppn" not in control.graph.nodes:
        pytest.skip("no cppn node type is registered")
    decl = control.graph.nodes["cppn"].param("scale")
    send(client, server, message("/cppn/scale/norm", (0.75, "f")))
    control.apply_pending(wait=30)
    # 0.75 of the way from 0.01 to 100 by ratio: 10; 0.75 is exact in float32.
    assert control.value("cppn", "scale") == pytest.approx(10.0, rel=_log_roundtrip_bound(decl))
    send(client, server, message("/cppn/scale/norm"))
    # The reply is a float32: half a unit in its last place, relative.
    assert reply(client).params == [pytest.approx(0.75, rel=2**-24)]
    assert control.stats["rejected"] == 0


# -- python-osc's own noise --------------------------------------------------------------------------

def test_a_bundle_element_python_osc_cannot_identify_is_malformed_and_only_our_line_says_so(control, server,
                                                                                           client, caplog):
    empty = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + b"\x00\x00\x00\x04" + b"\x00\x00\x00\x00"
    odd_tag = _bundle(b"/smooth/alpha\x00\x00\x00,c\x00\x00\x00\x00\x00A")
    with caplog.at_level(logging.DEBUG):
        send(client, server, empty, odd_tag, message("/smooth/alpha", 0.5))
    assert control.stats["malformed"] == 1 and control.stats["rejected"] == 1
    assert control.apply_pending() == 1
    ours = {CONTROL_LOG, SERVER_LOG}
    assert [r.getMessage() for r in caplog.records if r.name not in ours] == []
    assert any("malformed OSC packet" in r.getMessage() for r in caplog.records if r.name == SERVER_LOG)


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
        assert entry["ACCESS"] == (1 if decl.type == "path" else 3)   # files are refused while running
        if decl.scale == "log":
            # The proposal has no scaling attribute: RANGE keeps its meaning, TAGS says "log".
            assert entry["TAGS"] == ["log"] and entry["DESCRIPTION"].startswith(decl.doc + " (log scale")
        else:
            assert "TAGS" not in entry and entry["DESCRIPTION"] == decl.doc
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
