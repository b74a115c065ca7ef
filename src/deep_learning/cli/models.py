"""`evaluate` and `predict`: a logged model scored on a test split, or predicting files, rows or text."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from deep_learning.cli.options import device_option, user_errors
from deep_learning.core.config import TrainConfig
from deep_learning.core.errors import InputError


@click.command()
@click.argument("model")
@device_option
@click.option(
    "--dataset",
    help="Whose test split to score on: mnist, fashion-mnist, imagefolder:DIR, csv:FILE, text:FILE, package.module:factory (default: the dataset the model was trained on, else mnist).",
)
@click.option("--log", is_flag=True, help="Record the evaluation in a new MLflow run tagged with the run that trained the model.")
@click.option("--best", is_flag=True, help="Score the best checkpoint the run MODEL kept (by its --monitor), not its final model.")
@user_errors
def evaluate(model: str, device: str, dataset: str | None, log: bool, best: bool) -> None:
    """Score MODEL on a test split: the loss and the run's metrics; a classifier's per-class accuracy and confusion matrix.

    MODEL is a run id (its state_dict.pt, read with torch.load(weights_only=True), so no pickled
    code runs), runs:/RUN_ID/model, models:/NAME/VERSION, models:/MODEL_ID, or the path of a state_dict.pt.
    Weights are mapped onto --device: a model trained on a GPU runs on a CPU-only machine.
    """
    from deep_learning import tracking
    from deep_learning.analysis.records import SOURCE_RUN_TAG
    from deep_learning.core.devices import describe_device, device_tags, resolve_device
    from deep_learning.experiment.inference import evaluate_model, load_model
    from deep_learning.experiment.recipe import short_name

    target = resolve_device(device)
    if best:
        model = tracking.best_checkpoint_uri(model)
    loaded = load_model(model, target)
    dataset = dataset or loaded.trained_with("dataset")
    click.echo(f"Model: {loaded.origin}, on {target}")
    evaluation = evaluate_model(loaded, dataset, target)
    click.echo(evaluation.report(), nl=False)
    if log:
        source = loaded.source_run
        logged = tracking.log_evaluation(
            f"evaluate-{short_name(loaded.trained_with('model'))}-{short_name(dataset)}-{target.type}",
            params={"model": model, "dataset": dataset, "device": device},
            metrics=evaluation.metrics(),
            report=evaluation.to_report(),
            tags={**device_tags(describe_device(target)), **({SOURCE_RUN_TAG: source.run_id} if source else {})},
            experiment_id=source.experiment_id if source else None,
        )
        click.echo(f"Logged evaluation run {logged.run_id}; to browse it: {logged.where_to_look()}", err=True)


@click.command()
@click.argument("model")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@device_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per input, or a JSON list.",
)
@click.option("--prompt", default=None, help="A text run's model: the text to continue.")
@click.option(
    "--tokens",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="A text run's model: how many characters to add to --prompt.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="A text run's model: divides the logits before sampling (lower: surer).",
)
@click.option(
    "--seed",
    type=click.INT,
    default=TrainConfig.seed,
    show_default=True,
    help="A text run's model: seeds the sampling (the same seed, the same text).",
)
@user_errors
def predict(
    model: str, files: tuple[Path, ...], device: str, output_format: str, prompt: str | None, tokens: int, temperature: float, seed: int
) -> None:
    """Predict with MODEL: the class of each image, a csv run's rows, or the continuation of a text run's --prompt.

    FILES are images for an image model: PNG or JPEG files (anything Pillow reads) or IDX files, gzip'd
    or not (an IDX file of many images gives one line per image, named FILE[INDEX]), converted to the
    model's input as its run recorded it (data_spec.json): grayscale or RGB, resized to its height and
    width (bilinear, antialiased); nothing is inverted or centred (MNIST digits: light on dark). For a
    csv run's model, FILES are csv files with its feature columns by name (other columns are ignored):
    each row's class and probability, or its predicted values. A text run's model takes no files but
    --prompt TEXT, and prints it continued by --tokens characters (seeded sampling, --temperature).

    MODEL is given as for `evaluate`: a run id, runs:/RUN_ID/model, models:/NAME/VERSION or a
    state_dict.pt path.
    """
    from deep_learning.core.config import REGRESSION, SEQUENCE
    from deep_learning.core.devices import resolve_device
    from deep_learning.experiment.inference import load_model
    from deep_learning.experiment.prediction import continue_prompt, estimate, read_csv_rows, read_images
    from deep_learning.experiment.prediction import predict as predict_classes

    target = resolve_device(device)
    loaded = load_model(model, target)
    spec = loaded.spec
    if spec.task == SEQUENCE:
        if files or prompt is None:
            raise InputError("A text run's model continues a prompt: give --prompt TEXT (and --tokens N), not files.")
        text = continue_prompt(loaded.model, spec, prompt, tokens, temperature, seed, target)
        click.echo(json.dumps({"prompt": prompt, "text": text}) if output_format == "json" else text)
        return
    if prompt is not None:
        raise InputError("--prompt is for a text run's model; this model predicts files.")
    if not files:
        raise InputError("Give the files to predict: images, or csv rows for a csv run's model.")
    names, inputs = read_csv_rows(files, spec) if spec.features else read_images(files, spec)
    if spec.task == REGRESSION:
        results = estimate(loaded.model, names, inputs, target, spec.features["target_names"] if spec.features else ())
        lines = [f"{result.row}: " + ", ".join(f"{name}={value:.6g}" for name, value in result.values.items()) for result in results]
    else:
        results = predict_classes(loaded.model, names, inputs, target, spec.class_names)
        lines = [f"{result.image}: {result.class_name} ({result.probability:.4f})" for result in results]
    click.echo(json.dumps([dataclasses.asdict(result) for result in results], indent=2) if output_format == "json" else "\n".join(lines))
