"""`asr-data`: corpora (LibriSpeech download/prepare, the built-in synthetic corpus), the doctor, n-gram LMs.

Each subcommand is a thin argparse shell over a library function; every `UserError` becomes one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.errors import UserError, stdout_closed_quietly


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) that points at --help, like every other error
    of ours; subcommand parsers are made of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="asr-data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("librispeech", help="official LibriSpeech corpora (OpenSLR 12) and LMs (OpenSLR 11)")
    ls_sub = ls.add_subparsers(dest="action", required=True)
    d = ls_sub.add_parser("download", help="download, verify (MD5) and extract subsets")
    d.add_argument("--subsets", type=_csv, default=["dev-clean", "dev-other", "test-clean", "test-other"],
                   help="comma-separated: train-clean-100,train-clean-360,train-other-500,dev-clean,dev-other,"
                        "test-clean,test-other")
    d.add_argument("--root", type=Path, default=Path("data/LibriSpeech"), help="extract into ROOT/<subset>/")
    d.add_argument("--mirror", default=None, help="base URL holding the archives (default: openslr.org/resources/12)")
    d.add_argument("--keep-archives", action="store_true", help="keep the .tar.gz after extraction")
    pr = ls_sub.add_parser("prepare", help="write one JSONL manifest per extracted subset")
    pr.add_argument("--root", type=Path, default=Path("data/LibriSpeech"), help="where `download` extracted")
    pr.add_argument("--subsets", type=_csv, default=None, help="default: every extracted subset")
    pr.add_argument("--out", type=Path, default=None, help="manifest folder (default: ROOT/manifests)")
    lm = ls_sub.add_parser("download-lm", help="OpenSLR 11 LMs, lexicon and vocabulary")
    lm.add_argument("--root", type=Path, default=Path("data/LibriSpeech/lm"), help="folder to download into")
    lm.add_argument("--files", type=_csv, default=None, help="default: all (3-gram pruned, 4-gram, lexicon, vocab)")
    lm.add_argument("--mirror", default=None, help="base URL (default: openslr.org/resources/11)")

    s = sub.add_parser("synth", help="generate the built-in speech corpus in LibriSpeech layout")
    s.add_argument("--preset", default="demo", help="tiny (tests) or demo (a few hours)")
    s.add_argument("--root", type=Path, default=Path("data/synthetic"), help="corpus folder (train/, dev/, test/, "
                   "manifests/)")
    s.add_argument("--minutes", type=float, default=None, help="override the preset's amount of training audio")
    s.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    s.add_argument("--jobs", type=int, default=None, help="parallel TTS jobs (default: all cores)")
    s.add_argument("--force", action="store_true",
                   help="replace a corpus in ROOT made with another preset, seed or --minutes")

    doc = sub.add_parser("doctor", help="pre-flight check of manifests")
    doc.add_argument("manifests", nargs="+", type=Path, help="JSONL manifests to check (asr-data writes them)")
    doc.add_argument("--subsampling", type=int, default=4, help="model time subsampling (for the CTC fit check)")
    doc.add_argument("--tokenizer", type=Path, default=None,
                     help="a run's tokenizer.json (model.tokenizer=sentencepiece): fit its pieces, not characters")
    doc.add_argument("--sample-rate", type=int, default=16000, help="the model's rate (features.sample_rate)")
    doc.add_argument("--min-duration", type=float, default=0.3, help="as data.min_duration: shorter are dropped")
    doc.add_argument("--max-duration", type=float, default=20.0, help="as data.max_duration: longer are dropped")
    doc.add_argument("--max-batch-seconds", type=float, default=120.0,
                     help="as data.max_batch_seconds: for the padding estimate of the sampler's batches")
    doc.add_argument("--num-buckets", type=int, default=10, help="as data.num_buckets")
    doc.add_argument("--plot", type=Path, default=None, help="write the duration histogram as a PNG")
    doc.add_argument("--all", action="store_true",
                     help="list every check, passed ones too, and a 12-bin duration histogram (default: the checks "
                          "with findings, a count of the others, 6 bins)")
    doc.add_argument("--jobs", type=int, default=None, help="parallel decoding jobs (default: all cores)")

    lmb = sub.add_parser("lm", help="word n-gram language models")
    lmb_sub = lmb.add_subparsers(dest="action", required=True)
    b = lmb_sub.add_parser("build", help="interpolated modified Kneser-Ney ARPA LM from text")
    b.add_argument("--text", type=Path, required=True, help="one sentence per line, or a JSONL manifest")
    b.add_argument("--order", type=int, default=3, choices=[2, 3, 4, 5], help="n-gram order")
    b.add_argument("--out", type=Path, required=True, help="ARPA file to write")
    return p


def _run(args: argparse.Namespace) -> int:
    if args.command == "librispeech":
        from asr.data import librispeech
        if args.action == "download":
            librispeech.download(args.subsets, args.root, mirror=args.mirror, keep_archives=args.keep_archives)
        elif args.action == "prepare":
            for name, path in librispeech.prepare(args.root, args.subsets, args.out).items():
                print(f"{name}: {path}")
        else:
            librispeech.download_lm(args.root, files=args.files, mirror=args.mirror)
        return 0
    if args.command == "synth":
        from asr.data import synthetic
        for name, path in synthetic.generate(args.preset, args.root, minutes=args.minutes, seed=args.seed,
                                             jobs=args.jobs, force=args.force).items():
            print(f"{name}: {path}")
        return 0
    if args.command == "doctor":
        from asr.data import doctor_report
        return doctor_report.main(args)
    if args.command == "lm":
        from asr.decoding import ngram
        ngram.build_arpa(args.text, args.order, args.out)
        print(f"wrote {args.out}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return stdout_closed_quietly(lambda: _run(args))
    except UserError as exc:
        print(f"asr-data: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asr-data: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
