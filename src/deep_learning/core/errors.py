"""The one exception type users see: what went wrong and what to do, in a line or two."""


class DeepLearningError(Exception):
    """An error the user can fix; the CLI prints its message without a traceback."""

    tags: dict[str, str] = {}  # recorded on the run it ended, beside the message


class ConfigError(DeepLearningError):
    """A parameter has a value no run can use."""


class DeviceError(DeepLearningError):
    """The requested device is unknown or not available on this machine."""


class DataError(DeepLearningError):
    """Dataset files are missing, corrupt or cannot be placed."""


class TrackingError(DeepLearningError):
    """The MLflow tracking store cannot be used."""


class CheckpointError(DeepLearningError):
    """A checkpoint cannot be written, read, or used to resume this run."""


class TrainingDiverged(DeepLearningError):
    """The loss became NaN or infinite."""

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.tags = {"error.epoch": str(epoch)}


class DistributedFailure(DeepLearningError):
    """A rank of a torchrun job failed, or was stopped because another one did."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; carries what the user needs to resume it."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number
        self.run_id: str | None = None
        self.epoch = 0
        self.checkpoint: str | None = None
        self.sweep_run_id: str | None = None

    def __str__(self) -> str:
        """What a notebook shows under the traceback: what is kept, and the call that continues it."""
        if self.sweep_run_id:
            return f"sweep {self.sweep_run_id} is KILLED in MLflow, its finished runs kept; continue it with sweep(resume={self.sweep_run_id!r})"
        if self.run_id:
            kept = f"its checkpoint of epoch {self.epoch} kept" if self.checkpoint else "no epoch had ended"
            return f"run {self.run_id} is KILLED in MLflow, {kept}; continue it with fit(..., resume={self.run_id!r})"
        return "interrupted before a run was created: nothing to resume"


class BenchmarkError(DeepLearningError):
    """A step of the benchmark failed: which one, and why."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class InputError(DeepLearningError):
    """A run, model or file named on the command line cannot be used."""
