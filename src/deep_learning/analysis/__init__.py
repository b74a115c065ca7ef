"""Run records, tables, comparison, roll-up and figures: plain data in, text and PNG out (neither torch nor mlflow)."""
