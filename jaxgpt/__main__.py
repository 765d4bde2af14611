"""`python -m jaxgpt train ...` / `python -m jaxgpt sample ...`: the same commands as train.py / sample.py (and the
console scripts jaxgpt-train / jaxgpt-sample that `pip install .` puts on the PATH); `python -m jaxgpt import`
turns a nanoGPT ckpt.pt or a Hugging Face GPT-2 directory into a run folder (jaxgpt.runimport.import_main);
`python -m jaxgpt prepare` (jaxgpt-prepare) writes a folder of token files (jaxgpt.data.prepare)."""
from __future__ import annotations

import sys

from .cli import prepare_main, sample_main, train_main
from .runimport import import_main

COMMANDS = {"train": train_main, "sample": sample_main, "import": import_main, "prepare": prepare_main}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to `train_main` / `sample_main`; a missing or unknown command is one line on stderr, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv and argv[0] not in ("-h", "--help") else "usage"
        asked = argv[:1] in (["-h"], ["--help"])  # help asked for goes to stdout, like every --help
        print(f"python -m jaxgpt: {given}: python -m jaxgpt {{train,sample,import,prepare}} [flags] (flags: "
              f"python -m jaxgpt train --help)", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
