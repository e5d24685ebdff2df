"""Predictions in label space, in one place: outputs -> a labelled DataFrame (:mod:`.frame`), a trained run's
predictions for new rows (:mod:`.from_run`, what ``runner.predict(df)`` does) and the ``dnn-cool-predict`` command
(:mod:`.cli`). Only the frame is imported here: the other two load the runner and Catalyst."""
from .frame import PROBA_PREFIX, label_frame, predictions_frame

__all__ = ["PROBA_PREFIX", "label_frame", "predictions_frame"]
