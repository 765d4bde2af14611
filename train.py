"""Train a GPT: `python train.py` (preset shakespeare-bpe, subword tokens) or `python train.py --preset baby`
(characters). The logic lives in jaxgpt/loop.py."""
import sys

from jaxgpt.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
