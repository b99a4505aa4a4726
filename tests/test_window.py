"""The performer's window under a real X server (Xvfb): `cppnviz live` runs, screenshots dumped with
xwd, keys typed with xdotool, the window's client killed from outside (XKillClient, as xkill does).

The picture is a cppn frame that does not move (feature_gain 0, no period), so a screenshot can be
compared with the frame rendered offline: every shown pixel must lie within the range of the source
pixels its scaled footprint covers (any bilinear or box filter gives a convex mix of them), less what
the filter's 8-bit truncation may lose, and everything outside the picture's rectangle must be black.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import cppnviz_command, ctrl_c_reaches_it, tone, write_wav
from cppnviz import runner
from cppnviz.graph import load_graph
from cppnviz.live import LiveStats
from cppnviz.ports import AudioWindow
from cppnviz.preview import PreviewWindow, level_db, natural_size, parse_size, placement
from cppnviz.host_bridge.osc.control import ParamControl
from xvfb import Xvfb, missing_tools

SCREEN = (800, 600)
FPS = 30


@pytest.fixture(scope="module")
def xvfb():
    if missing_tools():
        pytest.skip(f"window tests need {', '.join(missing_tools())} (.ci/run installs xvfb, xdotool, x11-apps)")
    server = Xvfb(*SCREEN)
    yield server
    server.close()


def graph(folder: Path, width: int, height: int, *, period: float = 0.0, seconds: float = 20.0) -> Path:
    """A song -> bands -> cppn graph whose picture holds still (feature_gain 0) unless `period` moves it."""
    song = folder / "song.wav"
    if not song.exists():
        write_wav(song, tone(220, seconds))
    nodes = {"audio": {"type": "audio_file", "params": {"path": str(song)}},
             "bands": {"type": "stft_bands", "inputs": {"audio": "audio.audio"}, "params": {"bands": "octave8"}},
             # seed 2, 4 layers: no pixel darker than 0.5 on its brightest channel, so the picture's edge shows
             "cppn": {"type": "cppn", "inputs": {"features": "bands.bands"},
                      "params": {"width": width, "height": height, "feature_gain": 0.0, "seed": 2, "layers": 4,
                                 "period": period}}}
    path = folder / f"window_{width}x{height}.yaml"
    path.write_text(yaml.safe_dump({"fps": FPS, "nodes": nodes}), encoding="utf-8")
    return path


def offline_frame(path: Path) -> np.ndarray:
    """Frame 0 rendered offline, as 8-bit RGB the way the window converts it."""
    g = load_graph(path)
    kept = {}
    runner.run(g, 1, names=g.upstream("cppn"), on_tick=lambda k, s: kept.setdefault(k, s.outputs[("cppn", "frame")]))
    frame = (np.clip(kept[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    assert frame.max(axis=2).min() >= 127, "the test picture must have no black pixel"
    return frame


def start(xvfb: Xvfb, path: Path, *args, seconds: float = 20) -> subprocess.Popen:
    return subprocess.Popen([*cppnviz_command(), "live", str(path), "--audio-backend", "null", "--osc-port", "0",
                             "--seconds", str(seconds), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=xvfb.env(), cwd=path.parent,
                            preexec_fn=ctrl_c_reaches_it)


def finish(process: subprocess.Popen, timeout: float = 20) -> str:
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return stderr


def stop(process: subprocess.Popen) -> None:
    """Kill a run a failed test left behind."""
    if process.poll() is None:
        process.kill()
        process.communicate()


def summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("live: ") and " frames in " in line]
    assert lines, stderr
    return lines[-1]


def wait_for(xvfb: Xvfb, what, window: str = "root", timeout: float = 20.0) -> np.ndarray:
    """Screenshots until `what(shot)` holds; the last one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            shot = xvfb.screenshot(window)
        except subprocess.CalledProcessError:   # the window changed size while being dumped: look again
            shot = None
        if shot is not None and what(shot):
            return shot
        assert time.monotonic() < deadline, "the screen never showed what was expected"
        time.sleep(0.1)


def still(xvfb: Xvfb, window: str, timeout: float = 20.0) -> np.ndarray:
    """The window's picture once four screenshots in a row, 0.1 s apart, are the same.

    A picture moved by cos(2 pi t / period) repeats at times symmetric about a multiple of the
    period, so two equal screenshots can happen while it moves; four in a row cannot.
    """
    deadline = time.monotonic() + timeout
    shots = [xvfb.screenshot(window)]
    while len(shots) < 4 or not all(np.array_equal(shot, shots[-1]) for shot in shots[-4:]):
        assert time.monotonic() < deadline, "the picture never stood still"
        time.sleep(0.1)
        shots.append(xvfb.screenshot(window))
    return shots[-1]


def cursor_settles(xvfb: Xvfb, shown: bool, timeout: float = 10.0) -> bool:
    """Whether the cursor at the screen's centre is (or soon becomes) shown or hidden; True without libXfixes.

    SDL applies a hidden cursor as it handles the window's events, a moment after the picture shows.
    """
    deadline = time.monotonic() + timeout
    while xvfb.cursor_shown(SCREEN[0] // 2, SCREEN[1] // 2) not in (shown, None):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def shows_picture(shot: np.ndarray) -> bool:
    h, w = shot.shape[:2]
    return bool(shot[h // 2, w // 2].max() > 0)


def letterbox_rect(frame: tuple[int, int], area: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a letterboxed frame must be: as large as fits with its aspect, centred (x, y, w, h)."""
    (fw, fh), (aw, ah) = frame, area
    scale = min(aw / fw, ah / fh)
    w, h = round(fw * scale), round(fh * scale)
    return (aw - w) // 2, (ah - h) // 2, w, h


def truncation(source: int, shown: int) -> int:
    """Levels pygame's smoothscale may lose in its pass along an axis of `source` pixels drawn as `shown`.

    Each pass keeps 8 bits and truncates (never rounds up): scaling up, once per pixel; scaling
    down by r = source/shown, each of the up to ceil(r) + 1 source pixels a shown pixel touches is
    weighted and truncated before the sum is divided by r.
    """
    ratio = source / shown
    return 1 if ratio <= 1 else math.ceil((math.ceil(ratio) + 1) / ratio)


def assert_shows(shot: np.ndarray, source: np.ndarray, rect: tuple[int, int, int, int],
                 crop: tuple[int, int, int, int] | None = None) -> None:
    """`shot` holds `source` (cropped to `crop`) scaled into `rect` and black everywhere else."""
    x, y, w, h = rect
    cx, cy, cw, ch = crop or (0, 0, source.shape[1], source.shape[0])
    outside = np.ones(shot.shape[:2], bool)
    outside[y:y + h, x:x + w] = False
    assert not shot[outside].any(), f"{np.count_nonzero(shot[outside].any(axis=1))} pixels left outside {rect}"

    def spans(n, offset, length, size):
        # The source pixels whose footprint dst pixel i covers, widened by one on each side.
        step = length / n
        lo = np.floor(offset + np.arange(n) * step).astype(int) - 1
        hi = np.ceil(offset + (np.arange(n) + 1) * step).astype(int) + 1
        return np.clip(lo, 0, size - 1), np.clip(hi, 1, size)

    src = source.astype(np.int16)
    cols, rows = spans(w, cx, cw, src.shape[1]), spans(h, cy, ch, src.shape[0])
    col_lo = np.stack([src[:, a:b].min(axis=1) for a, b in zip(*cols)], axis=1)
    col_hi = np.stack([src[:, a:b].max(axis=1) for a, b in zip(*cols)], axis=1)
    lo = np.stack([col_lo[a:b].min(axis=0) for a, b in zip(*rows)])
    hi = np.stack([col_hi[a:b].max(axis=0) for a, b in zip(*rows)])
    shown = shot[y:y + h, x:x + w].astype(np.int16)
    bad = (shown < lo - truncation(cw, w) - truncation(ch, h)) | (shown > hi)
    assert not bad.any(), f"{np.count_nonzero(bad.any(axis=2))} of {w * h} pixels are not the frame's"


# -- geometry, without a display ------------------------------------------------------------

def test_placement_keeps_the_aspect_fills_or_stretches():
    assert placement((160, 90), (500, 500), "letterbox") == ((0, 0, 160, 90), (0, 109, 500, 281))
    assert placement((160, 90), (800, 600), "fill") == ((20, 0, 120, 90), (0, 0, 800, 600))
    assert placement((160, 90), (333, 777), "stretch") == ((0, 0, 160, 90), (0, 0, 333, 777))
    for frame, window in [((160, 90), (1000, 10)), ((7, 1000), (1920, 1080)), ((4000, 3000), (640, 480))]:
        _, (x, y, w, h) = placement(frame, window, "letterbox")
        assert 0 <= x and 0 <= y and x + w <= window[0] and y + h <= window[1]
        assert w == window[0] or h == window[1]                   # as large as fits
        assert abs(w * frame[1] - h * frame[0]) <= max(frame)     # the aspect, to a pixel's rounding
        (sx, sy, sw, sh), _ = placement(frame, window, "fill")
        assert abs(sw * window[1] - sh * window[0]) <= max(window) and sw <= frame[0] and sh <= frame[1]


def test_natural_size_scales_small_frames_up_and_large_ones_down_to_the_screen():
    assert natural_size((64, 32), (1920, 1080), 512) == (512, 256)
    assert natural_size((1280, 720), (800, 600), 512) == (720, 405)
    assert natural_size((640, 360), (1920, 1080), 512) == (640, 360)
    assert parse_size("1280x720") == (1280, 720)
    for bad in ("1280", "0x10", "axb", "-5x5"):
        with pytest.raises(ValueError, match=repr(bad)):
            parse_size(bad)


def test_overlay_says_song_time_rates_level_osc_and_warns_when_the_frame_rate_collapses(tmp_path, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    path = graph(tmp_path, 64, 36)
    control = ParamControl(load_graph(path))
    window = PreviewWindow(song="song.wav", osc_port=9000, control=control, overlay=True)
    window.open()
    try:
        stats = LiveStats(44100, Fraction(FPS))
        n = round(44100 / FPS)
        audio = AudioWindow(np.full(3 * n, 0.5, np.float32), now=2 * n, sample_rate=44100)
        frame = np.full((36, 64, 3), 0.5, np.float32)
        started = time.perf_counter()
        while time.perf_counter() - started < 1.6:     # 2 of every 3 frames dropped: 10 of 30 fps shown
            stats.frames += 1
            stats.dropped += 2
            window.show(frame, None, stats, index=3 * stats.frames, end=600, audio=audio)
            time.sleep(1 / 10)
        control.handle("/cppn/scale", [2.0])
        window.show(frame, None, stats, index=540, end=600, audio=audio)
        lines = window._lines(stats, 540, 600, audio)
        warning = window._collapse(stats)
    finally:
        window.close()
    assert lines[0] == "song.wav  0:18, 0:01 left"
    assert lines[1].endswith("fps of 30, 67% dropped")
    assert lines[2] == f"input {20 * math.log10(0.5):5.1f} dBFS"                  # a constant 0.5: -6.0 dBFS
    assert lines[3].startswith("OSC in :9000, ") and "last 0.0 s ago" in lines[3]
    assert warning is not None and warning.startswith("LOW FRAME RATE") and "smaller render size" in warning
    assert "grid" in warning


def test_input_level_is_the_rms_of_the_frames_newest_audio():
    n = 44100 // FPS
    t = np.arange(4 * n) / 44100
    sine = (0.5 * np.sin(2 * np.pi * 450 * t)).astype(np.float32)     # 15 whole periods in 1/30 s
    offline = AudioWindow(sine, now=2 * n, sample_rate=44100)
    assert level_db(offline, FPS) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=1e-4)
    live_window = AudioWindow(np.concatenate([np.zeros(3 * n, np.float32), sine[:n]]), now=0, sample_rate=44100,
                              final=False)                             # live: the newest samples are the last
    assert level_db(live_window, FPS) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=1e-4)
    assert level_db(AudioWindow(np.zeros(3 * n, np.float32), now=n, sample_rate=44100), FPS) == -math.inf


# -- the real window ----------------------------------------------------------------------

def test_non_integer_scales_resized_and_fullscreen_are_letterboxed_and_f_and_q_work(tmp_path, xvfb):
    path = graph(tmp_path, 160, 90)
    frame = offline_frame(path)
    process = start(xvfb, path, "--window-size", "500x500")
    try:
        window = xvfb.window_of(process.pid)
        assert xvfb.geometry(window) == (500, 500)
        shot = wait_for(xvfb, shows_picture, window)
        assert_shows(shot, frame, letterbox_rect((160, 90), (500, 500)))    # x3.125: (0, 109, 500, 281)

        # Resized (kept inside the screen: xwd dumps only what is on it): bars at the sides now.
        xvfb.run("xdotool", "windowsize", "--sync", window, "640", "250")
        shot = wait_for(xvfb, lambda s: s.shape[:2] == (250, 640) and s[125, 320].any() and not s[125, 5].any(),
                        window)
        assert_shows(shot, frame, letterbox_rect((160, 90), (640, 250)))    # x2.78: (98, 0, 444, 250)

        assert cursor_settles(xvfb, True)                                   # over the window: a cursor
        xvfb.key(window, "f")
        shot = wait_for(xvfb, lambda s: s[5, 5].any() == 0 and s[300, 5].any())   # the whole screen's width
        assert_shows(shot, frame, letterbox_rect((160, 90), SCREEN))          # (0, 75, 800, 450)
        assert cursor_settles(xvfb, False)                                  # fullscreen: none

        window = xvfb.window_of(process.pid)   # pygame makes a new window when the mode changes
        xvfb.key(window, "f")
        wait_for(xvfb, lambda s: not s[300, 5].any())                          # a window again
        window = xvfb.window_of(process.pid)
        assert xvfb.geometry(window) == (640, 250)     # the size the window had before fullscreen
        xvfb.key(window, "q")
        stderr = finish(process)
    finally:
        stop(process)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr, stderr
    summary(stderr)


def test_fullscreen_flag_with_fit_fill_covers_the_screen(tmp_path, xvfb):
    # (stretch, the simplest case, is tested through placement() above)
    path = graph(tmp_path, 160, 90)
    frame = offline_frame(path)
    process = start(xvfb, path, "--fullscreen", "--fit", "fill", seconds=5)
    try:
        window = xvfb.window_of(process.pid)
        assert xvfb.geometry(window) == SCREEN
        shot = wait_for(xvfb, shows_picture)
        assert cursor_settles(xvfb, False)                       # no cursor on the projector
        # scale 800/120 = 600/90: the frame's sides cropped by 20 columns each
        assert_shows(shot, frame, (0, 0, *SCREEN), (20, 0, 120, 90))
        stderr = finish(process)
    finally:
        stop(process)
    assert process.returncode == 0, stderr


def test_a_frame_larger_than_the_screen_opens_scaled_to_fit_on_it(tmp_path, xvfb):
    path = graph(tmp_path, 1000, 250)
    frame = offline_frame(path)
    process = start(xvfb, path, seconds=3)
    try:
        window = xvfb.window_of(process.pid)
        width, height = xvfb.geometry(window)
        assert (width, height) == (720, 180)      # 90% of the screen's width, the frame's 4:1 kept
        shot = wait_for(xvfb, lambda s: s.any(axis=2).sum() >= width * height)
        # The window lies inside the screen: every one of its pixels is found on the root screenshot.
        rows, cols = np.nonzero(shot.any(axis=2))
        top, left = rows.min(), cols.min()
        assert (rows.max() - top + 1, cols.max() - left + 1) == (height, width)
        assert_shows(shot[top:top + height, left:left + width], frame, (0, 0, width, height))
        stderr = finish(process)
    finally:
        stop(process)
    assert process.returncode == 0, stderr


def test_show_keys_overlay_blackout_freeze_help_and_escape(tmp_path, xvfb):
    path = graph(tmp_path, 160, 90, period=0.5)     # a moving picture, to see it freeze
    process = start(xvfb, path, "--window-size", "480x360")
    try:
        window = xvfb.window_of(process.pid)
        clean = wait_for(xvfb, shows_picture, window)
        assert not clean[:45].any() and not clean[-45:].any(), "clean output: black bars, no overlay"

        xvfb.key(window, "o")     # the overlay: small text in the top-left corner, over the bar
        shot = wait_for(xvfb, lambda s: s[:45, :240].any(), window)
        assert not shot[:45, 300:].any(), "the overlay stays small"
        xvfb.key(window, "o")
        wait_for(xvfb, lambda s: not s[:45].any() and not s[-45:].any(), window)

        xvfb.key(window, "b")     # blackout
        wait_for(xvfb, lambda s: not s.any(), window)
        xvfb.key(window, "b")
        wait_for(xvfb, shows_picture, window)

        xvfb.key(window, "space")  # freeze: the picture stops moving (it changes every frame otherwise)
        first = still(xvfb, window)
        time.sleep(0.5)
        assert np.array_equal(xvfb.screenshot(window), first)
        xvfb.key(window, "space")
        wait_for(xvfb, lambda s: not np.array_equal(s, first), window)

        xvfb.key(window, "space")  # frozen again, so the help panel is the only change
        frozen = still(xvfb, window)
        xvfb.key(window, "h")      # the help panel, centred over the picture
        helped = wait_for(xvfb, lambda s: not np.array_equal(s, frozen), window)
        changed = np.nonzero((helped != frozen).any(axis=2))
        assert 60 < changed[0].min() and changed[0].max() < 300 and 60 < changed[1].min() and changed[1].max() < 420
        xvfb.key(window, "question")   # ? hides it: the frozen picture as it was
        wait_for(xvfb, lambda s: np.array_equal(s, frozen), window)

        xvfb.key(window, "Escape")
        stderr = finish(process)
    finally:
        stop(process)
    assert process.returncode == 0, stderr
    summary(stderr)


def ended_by(tmp_path, xvfb, end) -> tuple[int, str]:
    """A live run ended by `end(process, window)` once its picture shows: (exit status, stderr)."""
    process = start(xvfb, graph(tmp_path, 160, 90))
    try:
        window = xvfb.window_of(process.pid)
        wait_for(xvfb, shows_picture, window)
        end(process, window)
        stderr = finish(process)
    finally:
        stop(process)
    return process.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_exit_130_with_the_summary(tmp_path, xvfb, signum):
    returncode, stderr = ended_by(tmp_path, xvfb, lambda process, window: process.send_signal(signum))
    assert returncode == 130, stderr
    assert "Traceback" not in stderr and "error" not in stderr, stderr
    assert int(summary(stderr).split()[1]) > 0


def test_a_window_killed_from_outside_ends_the_run_with_the_summary(tmp_path, xvfb):
    returncode, stderr = ended_by(tmp_path, xvfb, lambda process, window: xvfb.kill_client(window))
    assert returncode == 0, stderr
    assert "X Error" not in stderr and "Traceback" not in stderr and "closed from outside" in stderr, stderr
    assert int(summary(stderr).split()[1]) > 0


def test_screens_lists_the_displays_and_a_missing_screen_is_one_error(tmp_path, xvfb):
    listed = subprocess.run([*cppnviz_command(), "screens"], capture_output=True, text=True, env=xvfb.env(),
                            timeout=60)
    assert listed.returncode == 0 and listed.stdout.splitlines() == ["SDL video driver: x11", "display 0: 800x600"], \
        listed
    # Two X screens are two displays to SDL, and `screens` lists both. (A window asked for on the second
    # opens on the connection's default screen: Xvfb has no monitors side by side, so --screen N > 0 is
    # not tested here; --screen is exercised as 0 and as one past the last.)
    two = Xvfb(*SCREEN, more=((640, 480),))
    try:
        listed = subprocess.run([*cppnviz_command(), "screens"], capture_output=True, text=True, env=two.env(),
                                timeout=60)
    finally:
        two.close()
    assert listed.returncode == 0 and listed.stdout.splitlines()[1:] == ["display 0: 800x600",
                                                                         "display 1: 640x480"], listed
    path = graph(tmp_path, 160, 90)
    result = subprocess.run([*cppnviz_command(), "live", str(path), "--audio-backend", "null", "--osc-port", "0",
                             "--screen", "1", "--seconds", "1"], capture_output=True, text=True, env=xvfb.env(),
                            timeout=60)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    assert "--screen 1" in errors[0] and "1 display" in errors[0] and "cppnviz screens" in errors[0]
