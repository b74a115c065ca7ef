"""The speed benchmark behind `deep-learning bench`: the chapter's loop against ours, and what MLflow costs.

One job per module: `chapter` (the chapter's loop, verbatim), `loops` (the interleaved race of
epochs), `machine` (threads, SGEMM rate, FLOPs, memory), `mlflow_costs` (a scratch store, a run's
fixed cost, logging the model), `commands` (CLI start-up, `mlflow run`), `targets` (the project's
targets, judged), `report` (JSON and markdown) and `suite` (all of it, in order).
"""
