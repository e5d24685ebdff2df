"""``python -m dnn_cool_catalyst.config`` is the same as the ``dnn-cool-run`` command."""
from .cli import main

if __name__ == "__main__":
    main()
