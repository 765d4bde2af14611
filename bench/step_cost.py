"""What a recipe costs per training step: the compiled train step of presets (with `--set` switches), interleaved.

    python bench/step_cost.py baby nanogpt-cpu "baby optimizer=adamw" "baby activation=gelu"

Each argument is a preset name followed by optional KEY=VALUE overrides. Every variant is compiled first, then the
repeats time them one after the other (A B C A B C ...), each call `steps_per_call` steps, stopped once the metrics
are on the host. Prints the median ms/step, the range and the ratio to the first variant. Per-token quality comes
from `bench/time_to_quality.py --iters N`; this gives the other half of time to quality.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's jaxgpt


def build(spec: str, tok, text: str) -> list:
    """[model config, train config, train tokens, state after the compiling call, times] for "PRESET KEY=VALUE ..."."""
    import jax
    import jax.numpy as jnp

    from jaxgpt.config import apply_overrides
    from jaxgpt.data import train_val_split
    from jaxgpt.presets import get_preset
    from jaxgpt.training import create_state, train_steps_jit

    name, *sets = spec.split()
    preset = get_preset(name)
    mc, tc = apply_overrides(replace(preset.model, vocab_size=tok.vocab_size), preset.train, sets)
    data = jnp.asarray(train_val_split(tok.encode(text), mc.block_size)[0])
    state, metrics = train_steps_jit(create_state(mc, tc), data, mc, tc, tc.steps_per_call)  # compile
    jax.block_until_ready(metrics)
    return [mc, tc, data, state, []]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help='"PRESET [KEY=VALUE ...]"')
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    import jax

    from jaxgpt.data import CharTokenizer, load_text
    from jaxgpt.training import train_steps_jit

    text = load_text(str(Path(os.environ.get("JAXGPT_DATA_DIR", REPO / "data")) / "tinyshakespeare.txt"))
    tok = CharTokenizer.from_text(text)
    runs = {spec: build(spec, tok, text) for spec in a.variants}
    for _ in range(a.repeats):
        for run in runs.values():
            mc, tc, data, state, times = run
            t0 = time.perf_counter()
            run[3], metrics = train_steps_jit(state, data, mc, tc, tc.steps_per_call)
            jax.block_until_ready(metrics)
            times.append((time.perf_counter() - t0) / tc.steps_per_call * 1e3)
    first = statistics.median(next(iter(runs.values()))[4])
    for spec, (*_, times) in runs.items():
        med = statistics.median(times)
        print(f"{spec:45s} {med:7.2f} ms/step [{min(times):.2f}-{max(times):.2f}]  x{med / first:.3f}")


if __name__ == "__main__":
    main()
