"""The chapter's loop and what it needs: config, data, models, metrics, optimization, devices, reproducibility. Imports neither mlflow nor any layer above."""
