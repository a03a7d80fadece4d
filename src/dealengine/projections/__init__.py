"""Folds over the application's event stream: one fold per view, whatever feeds it."""
