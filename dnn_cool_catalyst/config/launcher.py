"""Which launcher started this process: Catalyst's ``catalyst-run`` or not. Its own module so that the factories a
config calls and the guard of ``catalyst-run`` (``catalyst_run.py``, which imports the config machinery) can both
ask without importing each other."""
from __future__ import annotations

import sys

CATALYST_RUN_MODULE = "catalyst.contrib.scripts.run"


def launched_by_catalyst_run() -> bool:
    """Whether this process is Catalyst's ``catalyst-run`` (which imports nothing of ours and prints nothing)."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return CATALYST_RUN_MODULE in sys.modules or getattr(main_spec, "name", None) == CATALYST_RUN_MODULE
