"""Pure tensor math: no tasks, no graph, no state (the torchmetrics functional layer)."""
