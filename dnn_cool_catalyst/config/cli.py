"""``dnn-cool-run``: run a YAML config with our short names registered; readable errors instead of tracebacks.

    dnn-cool-run --config configs/security.yml [more.yml ...] [--set key.path=value ...] [--dev N]

Exit status 2 with one line on standard error when the config or the data it names is wrong.
"""
from __future__ import annotations

import argparse
import sys

from .run import run_config
from .validate import ConfigError


def _user_errors():
    """Errors that mean "your config or data is wrong", as opposed to a bug worth a traceback."""
    from ..errors import CheckpointError, ConverterError, FlowDefinitionError, RunnerError, TaskError

    return ConfigError, ConverterError, FlowDefinitionError, TaskError, RunnerError, CheckpointError, FileNotFoundError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dnn-cool-run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--configs", "-C", nargs="+", required=True, dest="configs",
                        metavar="CONFIG_PATH", help="YAML config(s), merged in order")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="override config values, e.g. --set project.n_samples=500 run.0.num_epochs=1")
    parser.add_argument("--dev", type=int, default=None, metavar="N",
                        help="development subset: run everything on N seeded rows, in <runner_name>-dev<N>")
    args = parser.parse_args(argv)
    try:
        run_config(args.configs, args.overrides, dev=args.dev)
    except _user_errors() as e:
        print(f"dnn-cool-run: error: {e}", file=sys.stderr)
        sys.exit(2)
    return 0


if __name__ == "__main__":
    main()
