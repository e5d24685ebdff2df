"""The security demo at full size reaches the quality the README promises (slow: about a minute on 2 cores)."""
import pytest

BINARY_AND_SHIRT = ["camera_blocked", "door_open", "door_locked", "person_present",
                    "person_regression.body_regression.shirt_type"]
BOXES = [f"person_regression.{part}_regression.{part}_{c}" for part in ("face", "body") for c in ("x1", "y1", "w", "h")]


@pytest.mark.slow
def test_security_demo_reaches_the_target_quality(tmp_path):
    import torch

    from dnn_cool_catalyst import demo

    torch.set_num_threads(2)
    _, gt, decoded = demo.run(project_dir=str(tmp_path))
    for table in (gt, decoded):
        values = table.set_index(["task_path", "metric_name"]).metric_res
        for task in BINARY_AND_SHIRT:
            assert values[(task, "accuracy")] >= 0.98, (task, values[(task, "accuracy")])
        for task in BOXES:
            assert values[(task, "mae")] <= 0.03, (task, values[(task, "mae")])  # fraction of the image size
