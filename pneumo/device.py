"""Which device trains: TensorFlow picks a GPU by itself when there is one; this says which.

Also the two GPU-only choices: mixed precision, and MirroredStrategy over several GPUs.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf


def gpus() -> list[str]:
    """Names of the visible GPUs (empty on a CPU-only machine)."""
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            names.append(tf.config.experimental.get_device_details(device).get("device_name", device.name))
        except (RuntimeError, ValueError):
            names.append(device.name)
    return names


def describe() -> str:
    """One line for the UI and the run folder: the GPU(s) or the CPU."""
    names = gpus()
    if not names:
        return f"CPU ({os.cpu_count()} cores, no GPU found)"
    if len(names) == 1:
        return f"GPU: {names[0]}"
    return f"{len(names)} GPUs: {', '.join(names)} (MirroredStrategy)"


def strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across several GPUs on one host; the default strategy otherwise."""
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(mixed: bool) -> str:
    """mixed_float16 on a GPU when asked (faster, half the memory); float32 on a CPU, where it is slower."""
    policy = "mixed_float16" if mixed and tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy
