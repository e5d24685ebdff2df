"""Workflows over one or more runners: cross-validation, folds and development subsets."""
