"""What every command shares: the one error path and the reusable option types.

User errors (a bad file, option or configuration: ValueError and its subclasses, OSError,
a failed generation job, a missing optional package) become one line ``error: ...`` on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ditau.generate.runner import GenerationError

#: Exceptions that are the user's to fix (the message names the file/field/option).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, GenerationError,
                                               ImportError)


def fail(err: BaseException | str) -> NoReturn:
    """Print ``error: <err>`` to stderr and exit with code 2."""
    typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the user errors raised inside the block into :func:`fail`."""
    try:
        yield
    except USER_ERRORS as err:
        fail(err)


def exit_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise ``SystemExit(143)`` in this process (the CLI's), so that the cleanup
    of an atomic write (``except BaseException``) removes its temporary file; forked workers
    keep the default action. Main thread only (else a no-op). Returns a function that restores
    the previous handler. Installed per command by the CLI entry, never at import time."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    owner = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked worker: die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)

    return restore


def scheduler_option(address: str | None) -> str | None:
    """The ``--scheduler`` value if it is a Dask scheduler address (``tcp://HOST:PORT``);
    ValueError naming ``--scheduler`` otherwise (None: not given)."""
    if address is None:
        return None
    try:
        from distributed.comm import get_address_host_port
    except ImportError as err:
        raise ImportError("--scheduler needs dask.distributed (pip install distributed)") \
            from err
    try:
        get_address_host_port(address)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--scheduler {address!r}: not a Dask scheduler address ({err}); "
                         "expected tcp://HOST:PORT") from err
    return address


def comma_list(values: str | Iterable[str] | None, option: str,
               choices: Sequence[str] | None = None) -> tuple[str, ...] | None:
    """Items of a comma-separated and/or repeated option (``--x a,b --x c`` -> (a, b, c));
    None if not given. ValueError naming ``option`` for an item not in ``choices``."""
    if values is None:
        return None
    raw = [values] if isinstance(values, str) else list(values)
    items = tuple(x.strip() for v in raw for x in v.split(",") if x.strip())
    if choices is not None:
        bad = [x for x in items if x not in choices]
        if bad:
            raise ValueError(f"{option}: unknown value(s) {bad}; choose from "
                             f"{', '.join(choices)}")
    return items


def key_values(values: Iterable[str] | None, option: str) -> dict[str, str]:
    """``NAME=VALUE`` items of a repeated option as a mapping (ValueError naming ``option``)."""
    out: dict[str, str] = {}
    for v in values or ():
        name, sep, val = (x.strip() for x in v.partition("="))
        if not sep or not name or not val:
            raise ValueError(f"{option}: expected NAME=VALUE, got {v!r}")
        if name in out:
            raise ValueError(f"{option}: {name} given twice ({out[name]!r} and {val!r})")
        out[name] = val
    return out


def given(**options: Any) -> dict[str, Any]:
    """The options that were given (not None), paths as strings: for config overrides."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()
            if v is not None}


def existing(path: Path, what: str = "file") -> Path:
    """``path`` if it exists, else a one-line user error naming it (FileNotFoundError,
    reported by :func:`user_errors` as ``error: PATH: no such file``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    return path


def existing_all(paths: Iterable[Path | None], what: str = "file") -> None:
    """:func:`existing` for each of ``paths`` (None: an option not given, skipped)."""
    for p in paths:
        if p is not None:
            existing(p, what)


#: The ``--force`` option of the commands that join files (merge, evaluate): a provenance
#: mismatch (files that do not belong together) becomes a warning instead of an error.
Force = Annotated[bool, typer.Option(
    "--force", help="go on when the files do not belong together (other run, shared job "
                    "seeds, other generator settings): a warning instead of an error")]


@contextmanager
def reported_warnings(*categories: type[Warning]) -> Iterator[None]:
    """Print the warnings of ``categories`` (default: the provenance warnings: files without
    run id, checks overridden by --force) raised inside the block as one line each,
    ``warning: ...`` on stderr; other warnings pass through."""
    if not categories:
        from ditau.provenance import ProvenanceWarning

        categories = (ProvenanceWarning,)
    with warnings.catch_warnings(record=True) as caught:
        for c in categories:
            warnings.simplefilter("always", c)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, categories):
                    typer.secho(f"warning: {w.message}", err=True, fg=typer.colors.YELLOW)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
