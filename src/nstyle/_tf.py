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
        import tensorflow as tf
        import keras  # noqa: F401  (loads its own C++ bits the same way)

        tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf
