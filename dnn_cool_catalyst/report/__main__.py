"""``python -m dnn_cool_catalyst.report`` is the same as the ``dnn-cool-report`` command."""
from .cli import main

if __name__ == "__main__":
    main()
