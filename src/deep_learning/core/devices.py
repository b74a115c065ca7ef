"""Devices: the chapter's default device, the devices this machine can train on, and what each one is."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

import torch
import torch.accelerator as accl

from deep_learning.core.errors import DeviceError


def get_default_device() -> torch.device:
    """The current accelerator (CUDA, MPS, XPU, ...) when one is available, else the CPU."""
    device = accl.current_accelerator(check_available=True)
    if device is not None:
        return device
    return torch.device("cpu")


def available_devices() -> list[str]:
    """Every device this machine can train on, CPU first, then each accelerator by index."""
    accelerator = accl.current_accelerator(check_available=True)
    devices = ["cpu"]
    if accelerator is not None:
        devices += [f"{accelerator.type}:{index}" for index in range(accl.device_count())]
    return devices


def resolve_device(name: str) -> torch.device:
    """Turn a --device value into a device this machine has, or explain which ones it has."""
    name = name.strip().lower()
    if name == "auto":
        return get_default_device()
    here = ", ".join(available_devices())
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"Unknown device {name!r}: use auto, cpu, cuda, cuda:N, mps, xpu, ... (available here: {here}).") from None
    if device.type == "cpu":
        return device
    accelerator = accl.current_accelerator(check_available=True)
    if device.type not in _accelerator_types():
        raise DeviceError(f"Device {name!r} cannot train models: use one of {here}.")
    if accelerator is None or accelerator.type != device.type:
        raise DeviceError(f"Device {name!r} is not available on this machine; available: {here}.")
    if device.index is not None and device.index >= accl.device_count():
        raise DeviceError(
            f"Device {name!r} does not exist: this machine has {accl.device_count()} {device.type} device(s); available: {here}."
        )
    if device.index is None:
        device = torch.device(device.type, accl.current_device_index())
    return device


def _accelerator_types() -> set[str]:
    return {"cuda", "mps", "xpu", "mtia", "hpu", "npu", "privateuseone"}


def describe_device(device: torch.device) -> dict[str, Any]:
    """Everything a run records about where it ran: the device, its host and torch's numeric settings."""
    host_cpu = cpu_name()
    description: dict[str, Any] = {
        "type": device.type,
        "index": device.index,
        "name": host_cpu,
        "count": 1,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_name": host_cpu,
        "torch_num_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "host_memory_bytes": _host_memory_bytes(),
    }
    if device.type == "cpu":
        description["memory_bytes"] = description["host_memory_bytes"]
    else:
        description["count"] = accl.device_count()
    if device.type == "cuda":
        description.update(_describe_cuda(device))
    elif device.type == "mps":
        description.update(_describe_mps())
    elif device.type == "xpu":
        description["name"] = torch.xpu.get_device_name(device)
    return description


def device_tags(description: dict[str, Any]) -> dict[str, str]:
    """The flat, searchable run tags taken from a device description (`tags."device.type" = 'cuda'`)."""
    tags = {
        "device.type": description["type"],
        "device.name": description["name"],
        "device.count": description["count"],
        "torch.version": description["torch_version"],
        "torch.cuda_version": description.get("cuda_version"),
        "torch.cudnn_version": description.get("cudnn_version"),
        "python.version": description["python_version"],
        "platform": description["platform"],
        "cpu.count": description["cpu_count"],
    }
    return {key: str(value) for key, value in tags.items() if value is not None}


def memory_metrics(device: torch.device) -> dict[str, float]:
    """Accelerator memory in MB for the per-epoch metrics (MLflow's system monitor does not see MPS)."""
    if device.type == "mps":
        return {"mps_allocated_megabytes": torch.mps.current_allocated_memory() / 2**20}
    if device.type == "cuda":
        return {"cuda_max_allocated_megabytes": torch.cuda.max_memory_allocated(device) / 2**20}
    return {}


def _describe_cuda(device: torch.device) -> dict[str, Any]:
    properties = torch.cuda.get_device_properties(device)
    details: dict[str, Any] = {
        "name": properties.name,
        "memory_bytes": properties.total_memory,
        "compute_capability": f"{properties.major}.{properties.minor}",
        "multiprocessor_count": properties.multi_processor_count,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if torch.version.hip:
        details["hip_version"] = torch.version.hip
    driver = _nvidia_driver_version()
    if driver:
        details["driver_version"] = driver
    return details


def _describe_mps() -> dict[str, Any]:
    return {
        "name": _sysctl("machdep.cpu.brand_string") or "Apple GPU",
        "memory_bytes": torch.mps.recommended_max_memory(),
        "macos_version": platform.mac_ver()[0],
    }


def _nvidia_driver_version() -> str | None:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.splitlines()[0].strip() if result.stdout.strip() else None


def cpu_name() -> str:
    """The CPU's model name, as the operating system reports it."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
                for line in cpuinfo:
                    if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                        value = line.split(":", 1)[1].strip()
                        if value and not value.isdigit():
                            return value
        except OSError:
            pass
    elif sys.platform == "darwin":
        name = _sysctl("machdep.cpu.brand_string")
        if name:
            return name
    return platform.processor() or platform.machine() or "unknown CPU"


def _sysctl(key: str) -> str | None:
    try:
        result = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _host_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
