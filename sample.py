"""Sample from a trained run: `python sample.py --out-dir out/baby --prompt "ROMEO:"`. The logic is in jaxgpt/cli.py."""
import sys

from jaxgpt.cli import sample_main

if __name__ == "__main__":
    sys.exit(sample_main())
