"""``python -m dnn_cool_catalyst.predict``: the ``dnn-cool-predict`` command (:mod:`.prediction.cli`)."""
from .prediction.cli import main
if __name__ == "__main__": main()  # noqa: E701  (three lines: this module is only the entry point)
