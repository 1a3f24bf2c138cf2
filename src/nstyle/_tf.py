"""Import TensorFlow without its start-up chatter.

TensorFlow's C++ side prints oneDNN and absl notices straight to file descriptor 2 while
it loads, before any environment variable or Python logger can stop it. A tool whose
errors must be one clean line on stderr cannot have that, so the import runs with fd 2
pointed at /dev/null. Only the import is silenced; later errors still reach stderr.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from .hardware import usable_cores


def quiet_tensorflow() -> ModuleType:
    """Return the ``tensorflow`` module, importing it with C++ logging silenced."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401  (loads its own C++ bits the same way)
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


def threads() -> int:
    """TensorFlow's intra-op threads: what was set, or the usable cores TensorFlow defaults to."""
    return quiet_tensorflow().config.threading.get_intra_op_parallelism_threads() or usable_cores()


def use_all_cores() -> int:
    """Set intra-op threads to the usable cores before TensorFlow starts; return the threads in use.

    TensorFlow's default can be the machine's core count rather than this process's affinity
    mask (a container's or ``taskset``'s share), which oversubscribes. Once TensorFlow's
    runtime has started the setting is fixed, and the threads it has are returned.
    """
    tf = quiet_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(usable_cores())
    except RuntimeError:  # the runtime is already up (a test, a notebook): keep what it has
        pass
    return threads()
