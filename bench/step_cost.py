"""What a recipe costs per training step: the compiled train step of presets (with `--set` switches), interleaved.

    python bench/step_cost.py baby nanogpt-cpu "baby optimizer=adamw" "baby activation=gelu"

Each argument is a preset name followed by optional KEY=VALUE overrides. Every variant is compiled first
(`train_speed.JaxRunner`), then the repeats time them one after the other (A B C A B C ...), each call
`steps_per_call` steps, stopped once the loss is on the host. Prints the median ms/step, the range and the ratio
to the first variant. Per-token quality comes from `bench/time_to_quality.py --iters N`; this gives the other half
of time to quality.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from cpu_class import cpu_class  # noqa: E402
from train_speed import JaxRunner, text_path  # noqa: E402  (the same compiled step and text train_speed times)


def build(spec: str, vocab_size: int, fn=None):
    """train_speed.JaxRunner (compiled, Tiny Shakespeare) for "PRESET KEY=VALUE ..." (`fn`: JaxRunner's)."""
    from jaxgpt.config import apply_overrides
    from jaxgpt.presets import get_preset

    name, *sets = spec.split()
    preset = get_preset(name)
    return JaxRunner(*apply_overrides(replace(preset.model, vocab_size=vocab_size), preset.train, sets), fn=fn)


def interleaved(runs: dict, repeats: int) -> dict:
    """ms/step of each JaxRunner in `runs`, `repeats` times, timed one after the other (A B C A B C ...), a whole
    compiled call (`steps_per_call` steps) each, after one untimed round: the first round after the compiles ran
    6-7x slower on every variant (2026-12-07, Intel Xeon) and only widened the printed ranges."""
    times = {key: [] for key in runs}
    for r in range(repeats + 1):
        for key, run in runs.items():
            k = run.tc.steps_per_call
            t = run.time(k) / k * 1e3
            if r:
                times[key].append(t)
    return times


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help='"PRESET [KEY=VALUE ...]"')
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    print(cpu_class(), flush=True)
    from jaxgpt.data import CharTokenizer, load_text

    vocab_size = CharTokenizer.from_text(load_text(text_path())).vocab_size
    times = interleaved({spec: build(spec, vocab_size) for spec in a.variants}, a.repeats)
    first = statistics.median(next(iter(times.values())))
    for spec, ts in times.items():
        med = statistics.median(ts)
        print(f"{spec:45s} {med:7.2f} ms/step [{min(ts):.2f}-{max(ts):.2f}]  x{med / first:.3f}")


if __name__ == "__main__":
    main()
