"""Ray: `render --ray` and `batch` against a real local Ray cluster, loopback only.

Ray swaps 127.0.0.1 for the machine's interface address, so the head, its workers and every driver run
inside a network namespace of their own with only a loopback interface (`unshare --net`, root only).
One cluster session serves every check: Ray takes seconds to start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from conftest import SR, cppnviz_command, run_cli, write_wav

FFPROBE = shutil.which("ffprobe")
FPS = 30


def namespace_problem() -> str | None:
    """Why a loopback-only network namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "not root: unshare --net needs root (.ci/run runs as root)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip missing (apt-get install util-linux iproute2; .ci/run does)"
    done = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"unshare --net failed: {done.stderr.strip()}"
    return None


pytestmark = pytest.mark.skipif(namespace_problem() is not None, reason=str(namespace_problem()))


def song(path: Path, seconds: float, seed: int) -> Path:
    """Noise with loud clicks: every band has a median and moves (a real 16-bit WAV)."""
    rng = np.random.default_rng(seed)
    audio = 0.02 * rng.standard_normal((round(seconds * SR), 2))
    for t in rng.uniform(0, seconds - 0.01, size=round(4 * seconds)):
        i = round(t * SR)
        audio[i:i + 256] += 0.8 * np.hanning(256)[:, None] * rng.standard_normal((256, 2))
    return write_wav(path, audio)


def graph(path: Path, audio: Path, *, size=(32, 48), layers=4, hidden=16, out="out.mp4", **encoder) -> Path:
    """audio -> bands -> median normaliser -> smoother -> cppn (its scale driven, blurred) -> encoder."""
    nodes = {
        "audio": {"type": "audio_file", "params": {"path": str(audio)}},
        "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "octave8"}},
        "norm": {"type": "normalizer", "inputs": {"features": "bands.bands"}, "params": {"gain": 0.5}},
        "smooth": {"type": "smoother", "inputs": {"features": "norm.features"}},
        "cppn": {"type": "cppn", "inputs": {"features": "smooth.features"},
                 "params": {"height": size[0], "width": size[1], "layers": layers, "hidden": hidden, "seed": 7},
                 # A drive keeps state (its blur sees the whole run): the driver computes it, workers apply it.
                 "drive": {"scale": {"from": "norm.features[1]", "min": 0.5, "max": 3.0, "blur": 0.2}}},
        "video": {"type": "encoder", "inputs": {"frame": "cppn.frame", "audio": "audio.audio"},
                  "params": {"path": out, "preset": "ultrafast", **encoder}},
    }
    path.write_text(yaml.safe_dump({"fps": FPS, "nodes": nodes}))
    return path


# The session inside the namespace: a local cluster with 2 CPUs started by ray.init, the CLI as further
# drivers, Ray's state API to find and kill a worker mid-segment and to see the retry, then shutdown.
SESSION = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    plan = json.load(open(sys.argv[1]))
    import ray
    from ray.util.state import list_tasks
    results = {}
    # This driver starts the cluster and is its only owner: shutdown() stops exactly its processes.
    ray.init(num_cpus=2, object_store_memory=200_000_000, include_dashboard=True, _temp_dir=plan["temp"],
             logging_level="ERROR", log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    try:
        def running_worker(proc):
            while proc.poll() is None:
                tasks = list_tasks(filters=[("name", "=", "render_segment"), ("state", "=", "RUNNING")],
                                   raise_on_missing_output=False)
                pids = [t.worker_pid for t in tasks if getattr(t, "worker_pid", None)]
                if pids:
                    return pids[0]
                time.sleep(0.05)

        for step in plan["steps"]:
            args = [a.replace("@RAY", address) for a in step["args"]]
            began = time.time()
            proc = subprocess.Popen(plan["cli"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=plan["cwd"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            extra = {}
            if step.get("kill") or step.get("interrupt"):
                pid = running_worker(proc)
                if pid is None:
                    pass                             # the render ended first: the test says so
                elif step.get("kill"):
                    os.kill(pid, signal.SIGKILL)
                else:
                    proc.send_signal(signal.SIGINT)
                extra["pid"] = pid
            out, err = proc.communicate(timeout=240)
            if step.get("kill"):
                tasks = list_tasks(filters=[("name", "=", "render_segment")], detail=True, limit=10000,
                                   raise_on_missing_output=False)
                extra["retried"] = sorted({t.task_id for t in tasks if t.attempt_number > 0})
            if step.get("interrupt"):
                time.sleep(1.0)
                tasks = list_tasks(filters=[("name", "=", "render_segment"), ("state", "=", "RUNNING")],
                                   raise_on_missing_output=False)
                extra["still_running"] = len(tasks)
            results[step["name"]] = {"rc": proc.returncode, "stdout": out, "stderr": err,
                                     "seconds": time.time() - began, **extra}
    finally:
        json.dump(results, open(plan["results"], "w"))
        ray.shutdown()
""")


def in_namespace(plan: dict, timeout: float = 600) -> dict:
    """Run SESSION in a fresh network namespace with only loopback up; return each step's outcome."""
    folder = Path(plan["cwd"])
    (folder / "session.py").write_text(SESSION)
    (folder / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" session.py plan.json',
                           sys.executable], cwd=folder, capture_output=True, text=True, timeout=timeout)
    results = Path(plan["results"])
    found = json.loads(results.read_text()) if results.exists() else {}
    assert len(found) == len(plan["steps"]), f"the Ray session failed: {done.stderr[-3000:]}"
    return found


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Single-process references rendered here; the same renders on Ray, a worker killed, a batch, Ctrl-C."""
    tmp = tmp_path_factory.mktemp("ray")
    a = song(tmp / "a.wav", 3.0, 1)
    b = song(tmp / "b.wav", 2.0, 2)
    (tmp / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    small = graph(tmp / "small.yaml", a, crf=0)             # crf 0: x264 lossless, so the decoded frames compare
    # Slow enough to catch a task on any machine: a segment (1 s, 30 frames of 384x384 through 8x48) takes
    # seconds of CPU, far longer than Ray's state API takes to report it running (tenths of a second).
    big = graph(tmp / "big.yaml", b, size=(384, 384), layers=8, hidden=48, crf=0)
    batch = graph(tmp / "batch.yaml", a, crf=20)
    for args in (["small.yaml", "--set", "video.format=png", "--out", "png_single/"],
                 ["small.yaml", "--out", "single.mp4"], ["big.yaml", "--out", "big_single.mp4"]):
        assert run_cli("render", *args, "--quiet", cwd=tmp).returncode == 0
    ray_args = ["--ray", "@RAY", "--quiet"]
    temp = tempfile.mkdtemp(prefix="rt")                       # short: Ray's socket paths must fit in 107 bytes
    steps = [
        {"name": "png", "args": ["render", "small.yaml", "--set", "video.format=png", "--out", "png_ray/",
                                 "--segment-seconds", "0.4", *ray_args]},
        {"name": "mp4", "args": ["render", "small.yaml", "--out", "ray.mp4", "--segment-seconds", "0.4", *ray_args]},
        {"name": "kill", "kill": True, "args": ["render", "big.yaml", "--out", "big_ray.mp4", "--segment-seconds",
                                                "1", *ray_args]},
        {"name": "interrupt", "interrupt": True, "args": ["render", "big.yaml", "--out", "cut.mp4",
                                                          "--segment-seconds", "1", *ray_args]},
        {"name": "batch", "args": ["batch", "batch.yaml", "a.wav", "bad.wav", "b.wav", "--out-dir", "videos",
                                   "--segment-seconds", "0.5", *ray_args]},
    ]
    try:
        results = in_namespace({"cwd": str(tmp), "cli": cppnviz_command(), "steps": steps, "temp": temp,
                                "results": str(tmp / "results.json")})
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return tmp, results


def ok(results: dict, name: str) -> dict:
    step = results[name]
    assert step["rc"] == 0, f"{name}: exit {step['rc']}: {step['stderr'][-2000:]}"
    return step


def yuv_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="yuv420p") for f in c.decode(video=0)])


def sound(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)


def probe(path: Path) -> dict:
    out = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,nb_read_frames,duration,start_time,sample_rate",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}


def test_png_frames_on_ray_are_bit_identical_to_the_single_process_render(session):
    tmp, results = session
    assert "in 8 segments" in ok(results, "png")["stderr"]     # 90 frames in segments of 12
    single, ray = sorted((tmp / "png_single").iterdir()), sorted((tmp / "png_ray").iterdir())
    assert [p.name for p in ray] == [p.name for p in single] and len(ray) == 3 * FPS
    assert all(r.read_bytes() == s.read_bytes() for r, s in zip(ray, single))


@pytest.mark.skipif(FFPROBE is None, reason="ffprobe not installed (apt-get install ffmpeg; .ci/run does)")
def test_mp4_on_ray_has_the_same_frames_duration_and_sound(session):
    tmp, results = session
    ok(results, "mp4")
    single, ray = probe(tmp / "single.mp4"), probe(tmp / "ray.mp4")
    for kind in ("video", "audio"):
        for key in ("codec_name", "nb_read_frames", "duration", "start_time"):
            assert ray[kind][key] == single[kind][key], (kind, key)
    assert int(ray["video"]["nb_read_frames"]) == 3 * FPS
    # Lossless H.264 (crf 0): every decoded frame, joins included, equals the single-process one.
    assert np.array_equal(yuv_frames(tmp / "ray.mp4"), yuv_frames(tmp / "single.mp4"))
    # The song is encoded once, with the encoder node's own blocks: the same AAC, decoded sample for sample.
    assert np.array_equal(sound(tmp / "ray.mp4"), sound(tmp / "single.mp4"))


def test_a_worker_killed_mid_segment_still_gives_the_exact_file(session):
    tmp, results = session
    step = ok(results, "kill")
    assert step["retried"], "no segment was retried: the kill missed its task"
    assert np.array_equal(yuv_frames(tmp / "big_ray.mp4"), yuv_frames(tmp / "big_single.mp4"))
    assert np.array_equal(sound(tmp / "big_ray.mp4"), sound(tmp / "big_single.mp4"))


def test_ctrl_c_cancels_every_segment_and_leaves_no_file(session):
    tmp, results = session
    step = results["interrupt"]
    assert step["rc"] == 130, step["stderr"][-2000:]
    assert "error: interrupted; no output was written" in step["stderr"]
    assert step["still_running"] == 0
    assert not [p.name for p in tmp.iterdir() if p.name.startswith((".cut", "cut"))]


def test_batch_with_a_corrupt_song_writes_the_others_and_exits_2(session):
    tmp, results = session
    step = results["batch"]
    assert step["rc"] == 2
    errors = [line for line in step["stderr"].splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.wav" in errors[0], step["stderr"]
    assert sorted(p.name for p in (tmp / "videos").iterdir()) == ["a.mp4", "b.mp4"]
    assert int(probe(tmp / "videos" / "b.mp4")["video"]["nb_read_frames"]) == 2 * FPS
    rows = {line.split()[0]: line for line in step["stdout"].splitlines()[1:]}
    assert rows["bad.wav"].endswith("failed") and "wrote" in rows["a.wav"]
    # A rerun (no Ray needed) skips the two complete videos and reports the corrupt song again.
    made = {p.name: p.stat().st_mtime_ns for p in (tmp / "videos").iterdir()}
    again = run_cli("batch", "batch.yaml", "a.wav", "bad.wav", "b.wav", "--out-dir", "videos", cwd=tmp)
    assert again.returncode == 2
    assert again.stdout.count("up to date") == 2
    assert {p.name: p.stat().st_mtime_ns for p in (tmp / "videos").iterdir()} == made


def without_ray(folder: Path) -> dict:
    """An environment whose `ray` cannot be imported (a folder on PYTHONPATH): a Python without the extra."""
    (folder / "ray").mkdir()
    (folder / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    return {**os.environ, "PYTHONPATH": str(folder)}


def test_without_ray_installed_render_ray_says_what_to_install(tmp_path):
    """A folder on PYTHONPATH whose `ray` cannot be imported stands in for a Python without the extra."""
    env = without_ray(tmp_path)
    audio = song(tmp_path / "a.wav", 0.5, 3)
    g = graph(tmp_path / "g.yaml", audio)
    done = subprocess.run([*cppnviz_command(), "render", str(g), "--ray", "local"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("error: --ray needs Ray, which is not installed: "
                                                    "pip install 'cppnviz[cluster]'")
    assert not (tmp_path / "out.mp4").exists()


def test_a_graph_ray_cannot_split_is_refused_before_ray_is_reached(tmp_path):
    """Two encoders: the graph's error, not Ray's (a `ray` that cannot be imported shows Ray was never tried)."""
    env = without_ray(tmp_path)
    g = graph(tmp_path / "g.yaml", song(tmp_path / "a.wav", 0.5, 3))
    data = yaml.safe_load(g.read_text())
    data["nodes"]["video2"] = {**data["nodes"]["video"], "params": {"path": "other.mp4"}}
    g.write_text(yaml.safe_dump(data))
    done = subprocess.run([*cppnviz_command(), "render", str(g), "--ray", "local"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {g}: --ray: renders a graph with one encoder node, found 2"]


def test_render_without_ray_never_imports_it(tmp_path):
    audio = song(tmp_path / "a.wav", 0.5, 3)
    g = graph(tmp_path / "g.yaml", audio)
    code = (f"import sys; from cppnviz.cli import main; rc = main(['render', {str(g)!r}, '--quiet']); "
            "sys.exit(3 if 'ray' in sys.modules else rc)")
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True).returncode == 0
    assert (tmp_path / "out.mp4").exists()


def test_a_render_node_that_keeps_state_is_refused_by_name(tmp_path):
    from cppnviz.graph import build_graph
    from cppnviz.ray_render import split
    data = yaml.safe_load(graph(tmp_path / "g.yaml", song(tmp_path / "a.wav", 0.5, 3)).read_text())
    built = build_graph(data, base_dir=tmp_path)
    built.nodes["cppn"].keeps_state = True                     # as a frame_grid player declares on its class
    with pytest.raises(Exception) as caught:
        split(built)
    assert "node 'cppn': cppn keeps state between frames" in str(caught.value)


def test_a_segment_renders_alone_and_a_node_failure_in_it_pickles_back_to_the_driver(tmp_path):
    """render_segment is a plain function (Ray only ships it): frames 5.. alone equal those of a whole run."""
    import pickle

    from cppnviz import ray_render, runner
    from cppnviz.graph import load_graph

    g = graph(tmp_path / "g.yaml", song(tmp_path / "a.wav", 0.5, 3), format="png", out="whole/")
    assert run_cli("render", g, "--seconds", "0.3", "--quiet", cwd=tmp_path).returncode == 0
    built = load_graph(g, [("video", "path", str(tmp_path / "unused/"))])
    n = runner.total_frames(built, 0.3)                              # the same run: the median is over its frames
    cut = ray_render.split(built)
    stacked, driven = ray_render.analyse(built, cut, n, None)
    job = ray_render.make_job(built, cut)
    pngs = ray_render.render_segment(job, {k: v[5:] for k, v in stacked.items()}, [d[5:] for d in driven], 5, n)
    assert pngs == [(tmp_path / "whole" / f"{k:06d}.png").read_bytes() for k in range(5, n)]
    wrong = {k: v[5:, :3] for k, v in stacked.items()}                # 3 features where the cppn takes 8
    with pytest.raises(ray_render.SegmentBug) as caught:
        ray_render.render_segment(job, wrong, [d[5:] for d in driven], 5, n)
    back = pickle.loads(pickle.dumps(caught.value))                  # as Ray carries it to the driver
    assert back.node == "cppn" and "expected 8 feature values, found 3" in back.text
