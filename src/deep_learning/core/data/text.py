"""Text for language models: `--dataset text:FILE`, a character-level corpus. The vocabulary is the text's characters;
the text is split by position into training, validation and test parts (the last two `--val-fraction` each, 0.1
by default), and a sample is `--block-size` characters with, as its target, the next character at every position.

Training samples start at every position of their part; validation and test samples follow each other without
overlap, so each character is scored once. Samples are views of one token tensor: a split costs no copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.data as utils
from torch import Tensor

from deep_learning.core.config import SEQUENCE
from deep_learning.core.data.found import DEFAULT_VAL_FRACTION, Found
from deep_learning.core.errors import DataError, InputError, first_line

TEXT = "text:"


def text_splits(dataset: str, block_size: int, val_fraction: float) -> Found:
    """The text file's training, validation and test samples of `block_size` tokens (see the module)."""
    path = Path(dataset.removeprefix(TEXT)).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot read {path} as UTF-8 text: {first_line(error)}") from None
    if not text:
        raise DataError(f"{path} is empty: a text dataset needs characters to learn from")
    vocabulary = tuple(sorted(set(text)))
    tokens = encode(text, vocabulary)
    held_out = round(len(tokens) * (val_fraction or DEFAULT_VAL_FRACTION))
    parts = {
        "training": tokens[: len(tokens) - 2 * held_out],
        "validation": tokens[len(tokens) - 2 * held_out : len(tokens) - held_out],
        "test": tokens[len(tokens) - held_out :],
    }
    for name, part in parts.items():
        if len(part) <= block_size:
            raise DataError(
                f"--block-size {block_size} is longer than the {name} part of {path} ({max(len(part) - 1, 0)} characters to predict): "
                "lower --block-size, or give a longer text"
            )
    train, val, test = (
        windows(parts["training"], block_size, 1),
        windows(parts["validation"], block_size, block_size),
        windows(parts["test"], block_size, block_size),
    )
    return Found(train, val, test, vocabulary, str(path.absolute()), SEQUENCE)


def windows(tokens: Tensor, block_size: int, step: int) -> utils.TensorDataset:
    """Samples of `block_size` tokens every `step` positions, each with the next token at every position as its target."""
    return utils.TensorDataset(tokens[:-1].unfold(0, block_size, step), tokens[1:].unfold(0, block_size, step))


def encode(text: str, vocabulary: Sequence[str]) -> Tensor:
    """The text's characters as token ids (int64); a character outside the vocabulary is a one-line error."""
    index = {character: position for position, character in enumerate(vocabulary)}
    unknown = next((character for character in text if character not in index), None)
    if unknown is not None:
        raise InputError(
            f"{unknown!r} is not in the model's vocabulary of {len(vocabulary)} characters: use the characters it was trained on"
        )
    return torch.tensor([index[character] for character in text], dtype=torch.int64)


def decode(tokens: Sequence[int], vocabulary: Sequence[str]) -> str:
    return "".join(vocabulary[token] for token in tokens)


def continue_text(
    model: torch.nn.Module, prompt: Tensor, new_tokens: int, block_size: int, temperature: float, generator: torch.Generator
) -> list[int]:
    """`new_tokens` tokens sampled one by one after `prompt` (token ids on the model's device), each from the softmax of
    the last position's logits divided by `temperature`, seen through the last `block_size` tokens; seeded by `generator`."""
    context = prompt.unsqueeze(0)
    sampled = []
    with torch.inference_mode():
        for _ in range(new_tokens):
            logits = model(context[:, -block_size:])[0, -1].float()
            probabilities = F.softmax(logits / temperature, dim=-1)
            token = torch.multinomial(probabilities.cpu(), 1, generator=generator)
            sampled.append(int(token))
            context = torch.cat([context, token.to(context.device).unsqueeze(0)], dim=1)
    return sampled
