"""The one exception type users see: what went wrong and what to do, in a line or two."""


class DeepLearningError(Exception):
    """An error the user can fix; the CLI prints its message without a traceback."""


class ConfigError(DeepLearningError):
    """A parameter has a value no run can use."""


class DeviceError(DeepLearningError):
    """The requested device is unknown or not available on this machine."""


class DataError(DeepLearningError):
    """Dataset files are missing, corrupt or cannot be placed."""


class TrackingError(DeepLearningError):
    """The MLflow tracking store cannot be used."""


class BenchmarkError(DeepLearningError):
    """A step of the benchmark failed: which one, and why."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
