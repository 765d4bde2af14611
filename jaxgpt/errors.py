"""The error types, at the bottom of the package so that every layer can raise them.

Each input error is a `ValueError` whose message names the offending value and what would be valid; the command
lines print that message as one line and exit with status 2. `NumericalError` is a fault of the run (exit 1).
"""


class JaxgptError(ValueError):
    """Base of every error jaxgpt raises for input it cannot use."""


class UsageError(JaxgptError):
    """A command line that does not parse or whose options exclude each other."""


class ConfigError(JaxgptError):
    """A config value, key or combination that cannot work; the message names the values."""


class DataError(JaxgptError):
    """A text source that cannot be used; the message names it and what to do instead."""


class CheckpointError(JaxgptError):
    """No usable checkpoint where one is needed; the message names the folder, the step and why."""


class RunError(JaxgptError):
    """An out-dir or run request that cannot be honoured without losing work."""


class ShardingError(JaxgptError):
    """A batch, mesh or launch request the devices cannot honour; the message names the numbers."""


class NumericalError(RuntimeError):
    """Training produced a non-finite loss or gradient norm: a fault of the run, not of its input (exit status 1).
    The message names the first bad step and the checkpoint that was kept."""


def require_extra(what: str, extra: str, *modules: str) -> None:
    """Import `modules` (an optional extra's packages) or raise UsageError: "`what` needs M: pip install
    'jaxgpt[extra]'", the one hint every command gives for a missing extra."""
    import importlib

    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            raise UsageError(f"{what} needs {m}, which is not installed: pip install 'jaxgpt[{extra}]'") from None
