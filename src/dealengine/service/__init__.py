"""The command side (record, void) and the query side (states, reports) behind the Engine."""
