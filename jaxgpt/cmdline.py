"""What both command lines share around their work: quiet logs and the compile cache at the start, one line on
stderr and an exit status at a failure (2 bad input, 1 a fault), and the test-only pause at a named phase of a run.
"""
from __future__ import annotations

import argparse

import logging
import os
import sys
import time
from pathlib import Path

from .data import cache_dir
from .errors import JaxgptError, NumericalError, UsageError


def enable_compile_cache() -> None:
    """Persistent XLA compilation cache under $JAXGPT_CACHE_DIR: a repeat run skips compilation."""
    import jax  # here, so that parsing the command line (and --help) needs no jax
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def quiet() -> None:
    """Orbax logs absl warnings for ordinary events (a read-only manager, an item not restored); a CLI user
    needs only our own warnings."""
    logging.getLogger("absl").setLevel(logging.ERROR)


def pause_hook(on_event):
    """Tests only: with JAXGPT_TEST_PAUSE_AT=PHASE (one of loop.PHASES, optionally PHASE@STEP), the run writes the
    file $JAXGPT_TEST_PAUSE_MARKER and sleeps when it reaches that phase, so a test can kill it exactly there."""
    phase, _, step = os.environ.get("JAXGPT_TEST_PAUSE_AT", "").partition("@")
    if not phase:
        return on_event

    def pausing(name, **details):
        if on_event is not None:
            on_event(name, **details)
        if name == phase and (not step or details.get("step") == int(step)):
            marker = Path(os.environ["JAXGPT_TEST_PAUSE_MARKER"])  # whole or absent: the test kills once it exists
            partial = marker.with_name(marker.name + ".tmp")
            partial.write_text(f"{name} {details}\n")
            os.replace(partial, marker)
            time.sleep(3600)
    return pausing


def exit_status(prog: str, e: Exception, debug: bool) -> int:
    """One line on stderr and the exit status: 2 for bad input (a JaxgptError), 1 for a fault that is not the
    user's input (a diverged run, a bug, a full disk). --debug re-raises, for the traceback."""
    if debug:
        raise e
    bad_input = isinstance(e, JaxgptError)
    what = str(e) if bad_input or isinstance(e, NumericalError) else \
        f"internal error: {type(e).__name__}: {e} (--debug prints the traceback)"
    print(f"{prog}: error: {what}", file=sys.stderr)
    return 2 if bad_input else 1


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so errors stay one line and tests stay in-process."""

    def error(self, message):
        raise UsageError(message)


def prog(script: str, command: str) -> str:
    """The command the user typed, for usage lines: `jaxgpt-train` (a console script), `python -m jaxgpt train`,
    or the root script `train.py`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if name == "__main__.py":
        return f"python -m jaxgpt {command}"
    return name if name.startswith("jaxgpt-") else script
