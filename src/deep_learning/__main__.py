"""`python -m deep_learning` runs the CLI."""

from deep_learning.cli import cli

if __name__ == "__main__":
    cli()
