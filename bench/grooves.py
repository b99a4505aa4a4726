"""Labelled test music: drum grooves, bass and chords written as MIDI (mido) and rendered with fluidsynth.

The ground truth is the MIDI's own beat times (every quarter note, through the tempo map), so the
labels are exact. Each groove is a few bars of 16th-note step patterns repeated, a tempo map
(bar -> bpm) and an optional swing (every second 8th note delayed, as a shuffle does).

    python bench/grooves.py OUT_DIR      # writes NAME.mid, NAME.wav and NAME.beats.txt for each groove
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm
SR = 44100
PPQ = 480               # MIDI ticks per quarter note
LEAD_IN_BEATS = 1       # one silent beat first: nothing can be heard before a stream starts
DRUMS = 9               # General MIDI's percussion channel (10, counted from 0)
KIT = {"kick": 36, "snare": 38, "clap": 39, "hat": 42, "open": 46, "ride": 51, "crash": 49}


@dataclass(frozen=True)
class Groove:
    """One labelled piece: step patterns (16 steps a bar, 'x' loud, 'o' soft), tempo map, swing, length."""

    name: str
    tempo: tuple[tuple[int, float], ...]          # (bar, bpm) from that bar on
    drums: dict
    bars: int = 16
    swing: float = 0.0                            # delay of every second 8th, as a fraction of an 8th
    chords: tuple[tuple[int, ...], ...] = ((57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62))
    chord_steps: str = "x..............."         # where the chord (a sustained pad) restrikes in the bar
    bass_steps: str = "x.......x......."
    program: int = 89                             # warm pad; a piano (0) makes harder attacks
    held_out: bool = False                        # not looked at while the trackers' constants were chosen


ROCK = {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."}
GROOVES = (
    Groove("ballad_72", ((0, 72.0),), {"kick": "x.........x.....", "snare": "....x.......x...",
                                       "hat": "x.o.x.o.x.o.x.o."}, bars=10),
    Groove("funk_100", ((0, 100.0),), {"kick": "x..x..x...x..x..", "snare": "....x..o.o..x...",
                                       "hat": "xoxoxoxoxoxoxoxo"}, bass_steps="x..x..x...x.x...", program=0),
    Groove("house_128", ((0, 128.0),), {"kick": "x...x...x...x...", "clap": "....x.......x...",
                                        "open": "..x...x...x...x."}, bars=20),
    Groove("punk_160", ((0, 160.0),), {"kick": "x.......x.x.....", "snare": "....x.......x...",
                                       "hat": "x.x.x.x.x.x.x.x.", "crash": "x..............."}, bars=24, program=0),
    Groove("shuffle_96", ((0, 96.0),), {"kick": "x.......x.......", "snare": "....x.......x.o.",
                                        "ride": "x.x.x.x.x.x.x.x."}, bars=12, swing=0.33),
    Groove("change_100_to_124", ((0, 100.0), (8, 124.0)), ROCK, bars=18),
    # Made after the constants were settled, and run once to see how the trackers do on new grooves.
    Groove("hiphop_88", ((0, 88.0),), {"kick": "x......x.x......", "snare": "....x.......x...",
                                       "hat": "x.x.x.x.x.x.x.x."}, bars=12, swing=0.2, program=0, held_out=True),
    Groove("rock_140", ((0, 140.0),), {"kick": "x.....x.x.......", "snare": "....x.......x...",
                                       "ride": "x...x...x...x...", "crash": "x..............."}, bars=20,
           held_out=True),
)


def beat_times(groove: Groove) -> list[float]:
    """Seconds of every quarter note that holds music: the ground truth."""
    times, t = [], 0.0
    for beat in range(LEAD_IN_BEATS + 4 * groove.bars):
        if beat >= LEAD_IN_BEATS:
            times.append(t)
        t += 60.0 / bpm_at(groove, max(0, beat - LEAD_IN_BEATS) // 4)
    return times


def bpm_at(groove: Groove, bar: int) -> float:
    return [bpm for start, bpm in groove.tempo if start <= bar][-1]


def write_midi(groove: Groove, path: Path) -> None:
    """The groove as a type-1 MIDI file: a tempo track and one track each for drums, bass and chords."""
    import mido  # a dev dependency: only the benchmark writes MIDI

    events: dict[str, list] = {"drums": [], "bass": [], "chords": []}  # (tick, message)
    step = PPQ // 4

    def at(bar: int, index: int) -> int:
        tick = (LEAD_IN_BEATS * 4 + bar * 16 + index) * step
        if index % 4 == 2:  # the second 8th of a beat: swing delays it
            tick += round(groove.swing * 2 * step)
        return tick

    for bar in range(groove.bars):
        for name, steps in groove.drums.items():
            for i, mark in enumerate(steps):
                if mark in "xo":
                    velocity = 110 if mark == "x" else 60
                    events["drums"] += [(at(bar, i), mido.Message("note_on", channel=DRUMS, note=KIT[name],
                                                                  velocity=velocity)),
                                        (at(bar, i) + step // 2, mido.Message("note_off", channel=DRUMS,
                                                                              note=KIT[name]))]
        chord = groove.chords[bar % len(groove.chords)]
        for track, steps, notes, channel, velocity in (("bass", groove.bass_steps, (chord[0] - 24,), 1, 100),
                                                       ("chords", groove.chord_steps, chord, 0, 70)):
            hits = [i for i, mark in enumerate(steps) if mark == "x"] + [16]
            for i, end in zip(hits, hits[1:]):
                for note in notes:
                    events[track] += [(at(bar, i), mido.Message("note_on", channel=channel, note=note,
                                                                velocity=velocity)),
                                      (at(bar, end) - 10, mido.Message("note_off", channel=channel, note=note))]
    midi = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    tempo_track = mido.MidiTrack()
    last = 0
    for bar, bpm in groove.tempo:
        tick = (LEAD_IN_BEATS * 4 + bar * 16) * step if bar else 0
        tempo_track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=tick - last))
        last = tick
    midi.tracks.append(tempo_track)
    programs = {"bass": (1, 33), "chords": (0, groove.program)}
    for name, items in events.items():
        track = mido.MidiTrack()
        if name in programs:
            channel, program = programs[name]
            track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        last = 0
        for tick, message in sorted(items, key=lambda e: (e[0], e[1].type == "note_on")):
            track.append(message.copy(time=tick - last))
            last = tick
        midi.tracks.append(track)
    midi.save(str(path))


def missing_tools() -> str | None:
    """Why the grooves cannot be rendered here, or None."""
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (apt-get install fluidsynth)"
    if not SOUNDFONT.exists():
        return f"no General MIDI soundfont at {SOUNDFONT} (apt-get install fluid-soundfont-gm)"
    try:
        import mido  # noqa: F401
    except ImportError:
        return "mido is not installed (pip install -e '.[dev]')"
    return None


def render(groove: Groove, folder: Path) -> tuple[Path, list[float]]:
    """Write NAME.mid and render NAME.wav (44.1 kHz) with fluidsynth; return the wav and its beat times."""
    folder.mkdir(parents=True, exist_ok=True)
    mid, wav = folder / f"{groove.name}.mid", folder / f"{groove.name}.wav"
    write_midi(groove, mid)
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-F", str(wav), str(SOUNDFONT), str(mid)],
                   check=True, capture_output=True)
    times = beat_times(groove)
    (folder / f"{groove.name}.beats.txt").write_text("".join(f"{t:.6f}\n" for t in times))
    return wav, times


def main(argv: list[str]) -> int:
    why = missing_tools()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    out = Path(argv[1]) if len(argv) > 1 else Path("grooves")
    for groove in GROOVES:
        wav, times = render(groove, out)
        print(f"wrote {wav} ({len(times)} beats)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
