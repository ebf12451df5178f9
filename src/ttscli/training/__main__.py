"""`python -m ttscli.training {render,train,export,eval}`: the embedded voice's recipe."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

from . import LJSPEECH_DIR as DATA

GENERAL_SENTENCES = Path(__file__).with_name("general_sentences.txt")


def _subset(rows, n, min_chars=20, max_chars=130, seed=0):
    rows = [r for r in rows if min_chars <= len(r[1]) <= max_chars]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def _short(rows, n, max_chars=20, seed=0):
    """Up to n short lines (headings, "Marina Oswald"): what users type as single inputs."""
    rows = [r for r in rows if 4 <= len(r[1]) < max_chars]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ttscli.training")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of LJSpeech transcripts")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="render the teacher corpus (cached)")
    render.add_argument("--train-lines", type=int, default=5000)
    render.add_argument("--short-lines", type=int, default=150)
    render.add_argument("--test-lines", type=int, default=500)
    render.add_argument(
        "--everyday-lines",
        type=int,
        default=3000,
        help="sentences from the `fortunes` package added to the train split (questions, "
        "exclamations, short replies; 0: none)",
    )
    train = sub.add_parser("train", help="train (resumes from the cache)")
    train.add_argument("--minutes", type=float, default=30.0)
    train.add_argument("--threads", type=int, default=2)
    export = sub.add_parser("export", help="write the voice into the package")
    export.add_argument("--out", type=Path, default=None)
    evaluate = sub.add_parser("eval", help="quality figures on held-out lines")
    evaluate.add_argument("--lines", type=int, default=500)
    evaluate.add_argument(
        "--gl-iters", type=int, nargs="*", default=None, help="Griffin-Lim iterations to compare"
    )
    evaluate.add_argument(
        "--text",
        type=Path,
        default=None,
        help="sentences, one per line, instead of LJSpeech's test lines "
        f"(e.g. {GENERAL_SENTENCES.name}: everyday text unlike LJSpeech)",
    )
    evaluate.add_argument(
        "--seed", type=int, default=1234, help="seed of the decoding's prenet dropout (repeatable)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from . import corpus
    from .evaluate import text_file_rows

    if args.command == "render":
        all_train = corpus.read_transcripts(args.data / "ljspeech_train.txt")
        train_rows = _subset(all_train, args.train_lines) + _short(all_train, args.short_lines)
        if args.everyday_lines:
            held_out = {text for _, text in text_file_rows(GENERAL_SENTENCES)}
            everyday = corpus.everyday_sentences(args.everyday_lines, exclude=held_out)
            if not everyday:
                logging.warning(
                    "no fortune files in %s: apt-get install fortunes", corpus.FORTUNES_DIR
                )
            train_rows += everyday
        val_rows = corpus.read_transcripts(args.data / "ljspeech_val.txt")[:40]
        test_rows = corpus.read_transcripts(args.data / "ljspeech_test.txt")[: args.test_lines]
        for name, rows in (("val", val_rows), ("train", train_rows), ("test", test_rows)):
            logging.info("rendering %s: %d lines", name, len(rows))
            logging.info("-> %s", corpus.build_split(name, rows))
    elif args.command == "train":
        from .train import train as run_training

        run_training(minutes=args.minutes, threads=args.threads)
    elif args.command == "export":
        from .export import export

        export(args.out)
    elif args.command == "eval":
        from .evaluate import evaluate

        evaluate(args.lines, args.gl_iters, args.text, args.seed, data_dir=args.data)


if __name__ == "__main__":
    main()
