"""What a flow is scored with: per-task metrics, losses and the evaluation table."""
