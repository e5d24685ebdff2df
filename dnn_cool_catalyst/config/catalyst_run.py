"""Make Catalyst's own launcher, ``catalyst-run``, as strict as ``dnn-cool-run`` about what it is given.

``catalyst-run`` reads ``--config`` and silently drops every argument it does not know (so ``--set
run.0.num_epochs=1`` trained the full run), and a typo in a config surfaces as a library traceback. It imports
nothing of ours until the config's first ``dnn_cool_catalyst...`` target is resolved; at that moment (the package's
import) :func:`guard_catalyst_run` checks the command line and the config with the checks ``dnn-cool-run`` uses,
and turns the library's user errors into one line with exit status 2.
"""
from __future__ import annotations

import atexit
import os
import sys

from .launcher import launched_by_catalyst_run

PREFIX = "catalyst-run: error:"
_guarded = []


def fail(message: str, exit_handlers: bool = False) -> None:
    """One line on standard error and exit status 2. Not ``SystemExit``: the package is being imported inside
    ``pydoc.locate``, which turns any exception, that one too, into an ``ErrorDuringImport`` traceback; so the
    exit handlers run only when asked (``os._exit`` skips them)."""
    print(f"{PREFIX} {message}", file=sys.stderr)
    if exit_handlers:
        atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)


def check_command_line(argv) -> list:
    """The config paths of a ``catalyst-run`` command line; arguments it would ignore are refused."""
    from catalyst.contrib.scripts.run import parse_args

    known, unknown = parse_args(list(argv))
    if unknown:
        fail(f"catalyst-run ignores {' '.join(unknown)!r} (it reads only --config, --deterministic and "
             f"--benchmark); use dnn-cool-run --config {' '.join(known['configs'])} --set key.path=value, or edit "
             f"the config")
    return list(known["configs"])


def check_config(paths) -> None:
    """The checks ``dnn-cool-run`` makes before building anything (unknown targets, arguments, stages)."""
    from ..runners import DnnCoolSupervisedRunner
    from .run import RUNNER_STAGES, _lookup, _runner_class, load_config, make_registry
    from .validate import ConfigError, validate_config

    try:
        config = load_config(paths)
        registry = make_registry()
        methods = {m for m in RUNNER_STAGES if callable(getattr(DnnCoolSupervisedRunner, m, None))}
        validate_config(config, _lookup(registry), methods, " + ".join(paths), _runner_class(config, registry))
    except ConfigError as error:
        fail(str(error))


def one_line_user_errors(where: str) -> None:
    """An error that means "your config or data is wrong" ends the run with one line and exit 2, after the
    exit handlers (e.g. the note saying where the results went) have run."""
    from .cli import _user_errors
    from .run import _readable

    previous = sys.excepthook

    def hook(kind, error, trace):
        if isinstance(error, RuntimeError):
            error = _readable(error, where)  # hydra_slayer's "Factory ... call failed" around the real error
        if not isinstance(error, _user_errors()):
            return previous(kind, error, trace)
        fail(str(error), exit_handlers=True)

    sys.excepthook = hook


def guard_catalyst_run(argv=None) -> None:
    """In a ``catalyst-run`` process (once): refuse ignored arguments, check the config, make user errors one
    line. Anywhere else: nothing."""
    if _guarded or not launched_by_catalyst_run():
        return
    _guarded.append(True)
    paths = check_command_line(sys.argv[1:] if argv is None else argv)
    check_config(paths)
    one_line_user_errors(" + ".join(paths))
