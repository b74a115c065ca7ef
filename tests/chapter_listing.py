"""The chapter's code, block by block, with the indentation the printed text lost.

`test_chapter.py` checks that each block, whitespace aside, appears in the chapter file, so
this listing cannot drift from the spec. The loop's three definitions are the benchmark's copy,
which the benchmark times, so that they are checked here too.
"""

from deep_learning.benchmarks.chapter import EVALUATE, TRAIN, TRAIN_AND_EVALUATE

IMPORTS = """
import random
import deep_learning
import numpy as np
import torch
import torch.accelerator as accl
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
import torchvision.datasets as datasets
import torchvision.transforms.v2 as v2
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy
print('PyTorch version:', torch.__version__)
"""

SET_SEED = """
def set_seed(
    seed: int = 42,
    *,
    deterministic: bool = True,
    benchmark: bool = False,
    warn_only: bool = True,
) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch_rng = torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    # These two lines will explain in the future chapter
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = benchmark
    return torch_rng
"""

CALL_SET_SEED = """
torch_rng = set_seed(42)
"""

GET_DEFAULT_DEVICE = """
def get_default_device() -> torch.device:
    device = accl.current_accelerator(check_available=True)
    if device is not None:
        return device
    return torch.device('cpu')
"""

CALL_GET_DEFAULT_DEVICE = """
device = get_default_device()
print('Using device:', device)
"""

DATA = """
root = deep_learning.get_data_root()
transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
ds_rng = torch.Generator().manual_seed(42)
train_ds = datasets.MNIST(root, train=True, transform=transform, download=True)
train_ds, val_ds = utils.random_split(train_ds, [50000, 10000], generator=ds_rng)
train_dl = utils.DataLoader(train_ds, batch_size=64, shuffle=True)
val_dl = utils.DataLoader(val_ds, batch_size=128, shuffle=False)
"""

MODEL = """
model = nn.Sequential(
    nn.Flatten(),
    nn.Linear(28 * 28, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
)
loss_fn = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.1)
"""

RUN = """
torch_rng = set_seed(42)
device = get_default_device()
model = nn.Sequential(
    nn.Flatten(),
    nn.Linear(28 * 28, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
)
loss_fn = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.1)
metric = MulticlassAccuracy(num_classes=10)
val_metric = MulticlassAccuracy(num_classes=10)
train_and_evaluate(
    model=model,
    train_dl=train_dl,
    val_dl=val_dl,
    loss_fn=loss_fn,
    optimizer=optimizer,
    metric=metric,
    val_metric=val_metric,
    num_epochs=5,
    device=device,
)
"""

DEFINITIONS = {
    "set_seed": SET_SEED,
    "get_default_device": GET_DEFAULT_DEVICE,
    "train": TRAIN,
    "evaluate": EVALUATE,
    "train_and_evaluate": TRAIN_AND_EVALUATE,
}

# The whole chapter in the order it is printed.
SCRIPT = [
    IMPORTS,
    SET_SEED,
    CALL_SET_SEED,
    GET_DEFAULT_DEVICE,
    CALL_GET_DEFAULT_DEVICE,
    DATA,
    MODEL,
    TRAIN,
    EVALUATE,
    TRAIN_AND_EVALUATE,
    RUN,
]


def script(*, own_definitions: bool = True, num_epochs: int = 5) -> str:
    """The chapter as one script; without its own definitions it imports them from deep_learning."""
    blocks = SCRIPT if own_definitions else [block for block in SCRIPT if block not in DEFINITIONS.values()]
    source = "\n".join(blocks)
    if not own_definitions:
        source = source.replace(
            "import deep_learning\n", "import deep_learning\nfrom deep_learning import " + ", ".join(DEFINITIONS) + "\n", 1
        )
    return source.replace("num_epochs=5,", f"num_epochs={num_epochs},")
