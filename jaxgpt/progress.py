"""The loop's bookkeeping between compiled calls: the progress bar and throughput window, the check that every step
was finite, and the signal flags. `loop` owns the steps; this file owns what is read back from them.

Metrics of a compiled call are read after the next call has been dispatched, so the host never stalls the device;
the finiteness check uses those same arrays, so it costs no extra host sync.
"""
from __future__ import annotations

import signal
import threading
import time
from functools import partial
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

from . import flops
from .errors import NumericalError

OnEvent = Callable[..., None]  # on_event(name, **details); "progress" carries step = the steps whose metrics are read


class Progress:
    """The progress bar and the throughput window. `after_call` reads the metrics of the call before the one just
    dispatched (ready by then, so the host never waits on the device), updates the bar and reports the steps read
    as a "progress" event; `drain` reads the last one before an evaluation or a checkpoint."""

    def __init__(self, mc, tc, step: int, main: bool, on_event: OnEvent, flops_per_token: float,
                 peak: float | None, n_devices: int, t_start: float):
        self.tokens_per_step, self.on_event, self.main = tc.batch_size * mc.block_size, on_event, main
        self.mfu = partial(flops.mfu, flops_per_token=flops_per_token, n_devices=n_devices, peak=peak)
        self.bar = tqdm(total=tc.max_iters, initial=step, unit="step", dynamic_ncols=True, mininterval=0.5,
                        disable=not main)
        self.t_start, self.t_window = t_start, time.perf_counter()
        self.steps_window, self.pending, self.step = 0, None, step
        self.steps_log = None  # a rundir.MetricsLog for each step's {"step", "loss"} (loop.STEPS_LOG)

    def after_call(self, metrics: dict, n: int) -> None:
        self.drain()
        self.pending = (metrics, n)
        self.steps_window += n

    def drain(self) -> None:
        if self.pending is None:
            return
        (metrics, n), self.pending = self.pending, None
        # one transfer of both arrays; it waits for that call to finish, so the rate below is true
        losses, grad_norms = (np.asarray(a) for a in jax.device_get((metrics["loss"], metrics["grad_norm"])))
        _check_finite(self.step, losses, grad_norms)
        for i, step_loss in enumerate(losses if self.steps_log is not None else ()):
            self.steps_log.write({"step": self.step + i + 1, "loss": round(float(step_loss), 5)})
        loss, self.step = float(losses[-1]), self.step + n
        self.bar.update(n)
        self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{self._rate(self.steps_window):,.0f}", refresh=False)
        self.on_event("progress", step=self.bar.n)

    def _rate(self, steps: int) -> float:
        return steps * self.tokens_per_step / max(time.perf_counter() - self.t_window, 1e-9)

    def timing(self) -> dict:
        """Throughput since the last call (compilation included in the first window), then a new window."""
        rate = round(self._rate(self.steps_window), 1)
        utilisation = self.mfu(rate)
        out = {"tokens_per_s": rate, "elapsed_s": round(time.perf_counter() - self.t_start, 2),
               "mfu": None if utilisation is None else round(utilisation, 4)}  # null: peak unknown
        self.t_window, self.steps_window = time.perf_counter(), 0
        return out

    def write(self, text: str) -> None:
        if self.main:  # tqdm.write prints even when the bar is disabled
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
        if self.steps_log is not None:
            self.steps_log.close()


def _check_finite(step: int, losses: np.ndarray, grad_norms: np.ndarray) -> None:
    """The metrics of steps step+1.. (n,) each: NumericalError naming the first step with a non-finite value."""
    bad = ~(np.isfinite(losses) & np.isfinite(grad_norms))
    if bad.any():
        i = int(np.argmax(bad))
        raise NumericalError(f"training diverged at step {step + i + 1}: loss {losses[i]}, grad_norm "
                             f"{grad_norms[i]}")


class Signals:
    """SIGINT/SIGTERM set `signum`, read by the loop between compiled calls; a second one interrupts at once."""

    def __enter__(self):
        self.signum, self._old = None, {}
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)
