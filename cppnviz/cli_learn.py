"""The `cppnviz learn` command: train learned features on the user's songs (cli.py adds it with add_learn_command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CppnvizError
from .outputs import check_file_output, check_not_an_input

SIZE_HELP = "bottleneck units: the number of features (the CPPN's input count)"


def positive_ints(text: str) -> list[int]:
    """'256,64' -> [256, 64]; every size at least 1."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes such as 256,64, found {text!r}")
    return sizes


def add_learn_command(subparsers) -> None:
    """Add `learn` to the CLI's subcommands."""
    text = "train learned features (an autoencoder, with PCA as the baseline) on your songs"
    p = subparsers.add_parser("learn", help=text, description=text + ". Prints both models' errors on held-out "
                              "music and keeps the better one (--method auto).")
    p.add_argument("songs", nargs="+", metavar="SONG", help="audio files (wav, flac, mp3, ogg, m4a, ...)")
    p.add_argument("--out", required=True, metavar="MODEL.npz", help="the model file to write")
    p.add_argument("--size", type=int, default=10, metavar="N", help=SIZE_HELP + " (default 10)")
    p.add_argument("--mels", type=int, default=64, metavar="N", help="mel bands per frame (default 64)")
    p.add_argument("--context", type=int, default=4, metavar="N", help="frames stacked into one input (default 4)")
    p.add_argument("--sample-rate", type=int, default=22050, metavar="HZ",
                   help="analysis rate; graphs using the model analyse at it (default 22050, as seed 003)")
    p.add_argument("--hidden", type=positive_ints, default=[256, 64], metavar="N,N",
                   help="hidden layer sizes of the encoder, mirrored in the decoder (default 256,64)")
    p.add_argument("--epochs", type=int, default=100, metavar="N", help="at most this many passes (default 100; "
                   "training stops earlier when the held-out error stops improving)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same songs and seed give the same model")
    p.add_argument("--holdout", type=float, default=0.2, metavar="F",
                   help="fraction of the songs kept out of training to measure generalisation (default 0.2)")
    p.add_argument("--method", choices=("auto", "autoencoder", "pca"), default="auto",
                   help="auto keeps whichever does better on held-out music (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_learn)


def check_args(args) -> None:
    """Every bad option at once, as the graph loader reports problems."""
    problems = []
    if not 1 <= args.size <= 1024:
        problems.append(f"--size: expected 1 to 1024 units, found {args.size}")
    if not 1 <= args.mels <= 256:
        problems.append(f"--mels: expected 1 to 256 bands, found {args.mels}")
    if not 1 <= args.context <= 64:
        problems.append(f"--context: expected 1 to 64 frames, found {args.context}")
    if not 8000 <= args.sample_rate <= 192000:
        problems.append(f"--sample-rate: expected 8000 to 192000 Hz, found {args.sample_rate}")
    if args.epochs < 1:
        problems.append(f"--epochs: expected at least 1, found {args.epochs}")
    if not 0 <= args.holdout < 1:
        problems.append(f"--holdout: expected a fraction from 0 to below 1, found {args.holdout}")
    if problems:
        raise _Problems(problems)


class _Problems(CppnvizError):
    def __init__(self, lines):
        self.lines = lines
        super().__init__("; ".join(lines))

    def problems(self):
        return self.lines


def cmd_learn(args) -> int:
    from tqdm import tqdm

    from . import learn
    from .nodes._logmel import MelSettings

    check_args(args)
    out = Path(args.out)
    check_file_output(out, what="a file name such as my_music.npz")
    check_not_an_input([args.out], args.songs)
    settings = MelSettings(sample_rate=args.sample_rate, n_mels=args.mels, context=args.context)
    corpus = learn.load_corpus(args.songs, settings, holdout=args.holdout, seed=args.seed)
    for line in corpus.skipped:
        print(f"warning: skipped {line}", file=sys.stderr)
    if args.size > min(settings.size, len(corpus.train)):
        raise CppnvizError(f"--size {args.size} is more than the {min(settings.size, len(corpus.train))} "
                           f"dimensions the training frames have")
    if args.method != "pca" and not len(corpus.heldout_time):
        raise CppnvizError(f"the training songs are too short: their {len(corpus.train)} frames leave none of "
                           f"their last 20% to stop the autoencoder's training on; give longer songs or --method pca")
    held = {"heldout_time": corpus.heldout_time, "heldout_songs": corpus.heldout_songs}
    pca = learn.fit_pca(corpus.train, args.size, settings)
    errors = {"pca": {k: (learn.pca_error(pca, v) if v is not None and len(v) else None) for k, v in held.items()}}
    chosen = pca
    if args.method != "pca":
        with tqdm(total=args.epochs, desc="learn", unit="epoch", disable=args.quiet, file=sys.stderr) as bar:
            def progress(epoch, error):
                bar.set_postfix(heldout=f"{error:.5f}", pca=f"{errors['pca']['heldout_time']:.5f}")
                bar.update(1)
            net, mean, epoch = learn.train_autoencoder(corpus, hidden=args.hidden, size=args.size, epochs=args.epochs,
                                                 seed=args.seed, progress=progress)
        errors["autoencoder"] = {k: (learn.ae_error(net, v, mean) if v is not None and len(v) else None)
                                 for k, v in held.items()}
        errors["autoencoder"]["epochs"] = epoch
        encoder, decoder = learn.halves(net, len(args.hidden) + 1)
        encoder = learn.LearnedModel("autoencoder", settings, encoder=encoder, decoder=decoder, mean=mean)
        # auto: judged on songs never trained on when there are some, else on the held-out time.
        judge = "heldout_songs" if corpus.heldout_songs is not None else "heldout_time"
        if args.method == "autoencoder" or errors["autoencoder"][judge] < errors["pca"][judge]:
            chosen = encoder
    header = {"songs": corpus.songs, "skipped": corpus.skipped, "errors": errors, "seed": args.seed,
              "hidden": args.hidden, "size": args.size, "requested_method": args.method}
    chosen.save(out, header)
    for key, words in (("heldout_time", "held-out time (last 20% of each training song)"),
                       ("heldout_songs", "held-out songs")):
        pca_error = errors["pca"][key]
        if pca_error is None:
            continue
        line = f"{words}: PCA-{args.size} {pca_error:.5f}"
        if "autoencoder" in errors:
            ae = errors["autoencoder"][key]
            line += f", autoencoder {ae:.5f} (PCA's error is {pca_error / ae:.2f}x the autoencoder's)"
        print(line, file=sys.stderr)
    print(f"kept the {chosen.method} ({args.size} features) in {out}", file=sys.stderr)
    return 0
