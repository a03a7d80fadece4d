"""Materialised views: the funnel and pipeline folds kept in tables, updated incrementally."""
