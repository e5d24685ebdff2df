"""What a trained run produces: inference, test-time augmentation, tuning and evaluation."""
