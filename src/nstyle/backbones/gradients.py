"""Convolutions whose input gradient is computed by TensorFlow's fast forward kernel.

Style transfer differentiates the network with respect to its input, a thousand times a run.
On a CPU, TensorFlow's ``Conv2DBackpropInput`` is markedly slower than the convolution it
differentiates, at the seed preset's shapes too (benchmarks/step_speed.py). That gradient is itself a forward convolution:

- stride 1: the convolution of the output gradient with the kernel turned by 180 degrees and
  its in/out channels swapped. 'same' padding stays 'same' for an odd kernel; 'valid'
  becomes 'full', a 'valid' convolution of the gradient padded by the kernel's size less one.
- a strided 1x1 convolution: a 1x1 convolution of the output gradient, spread back to every
  ``stride``-th pixel of the input.

The turned kernel is made once, when the weights are final (:meth:`InputGradConv2D.freeze`):
turning the kernels in every step cost more than the gradients saved. Any other convolution
(strided and wider than 1x1, dilated, grouped, channels first) keeps TensorFlow's gradient.
"""

from __future__ import annotations

import numpy as np

from ..backends import load_keras, quiet_import

tf = quiet_import("tensorflow")
keras = load_keras()


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def has_forward_gradient(kernel_size, strides, padding: str, dilation_rate=1, groups: int = 1) -> bool:
    """Whether :func:`conv2d` computes this convolution's input gradient as a forward convolution."""
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(strides)
    if _pair(dilation_rate) != (1, 1) or groups != 1:
        return False
    if (sh, sw) == (1, 1):
        return padding == "valid" or (kh % 2 == 1 and kw % 2 == 1)  # 'same' pads an odd kernel evenly
    return (kh, kw) == (1, 1)


def turn(kernel: np.ndarray) -> np.ndarray:
    """The kernel of the input gradient's convolution: turned 180 degrees, in and out swapped."""
    return np.ascontiguousarray(np.transpose(kernel[::-1, ::-1], (0, 1, 3, 2)))


def conv2d(x: tf.Tensor, kernel: tf.Tensor, turned: tf.Tensor, strides, padding: str) -> tf.Tensor:
    """``tf.nn.conv2d`` (NHWC) whose input gradient is a forward convolution with ``turned``.

    ``turned`` is :func:`turn` of ``kernel``. Only for convolutions :func:`has_forward_gradient` accepts.
    """
    strides = _pair(strides)

    @tf.custom_gradient
    def convolve(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        def gradient(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            dkernel = tf.raw_ops.Conv2DBackpropFilter(
                input=x,
                filter_sizes=tf.shape(kernel),
                out_backprop=dy,
                strides=[1, *strides, 1],
                padding=padding.upper(),
            )
            return _input_gradient(dy, turned, tf.shape(x), strides, padding), dkernel

        return tf.nn.conv2d(x, kernel, [1, *strides, 1], padding.upper()), gradient

    return convolve(x, kernel)


def _input_gradient(
    dy: tf.Tensor, turned: tf.Tensor, input_shape: tf.Tensor, strides: tuple[int, int], padding: str
) -> tf.Tensor:
    kh, kw = int(turned.shape[0]), int(turned.shape[1])
    if strides == (1, 1):
        if padding == "valid" and (kh, kw) != (1, 1):  # 'full': every output the input pixel reached
            dy = tf.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
        return tf.nn.conv2d(dy, turned, 1, padding.upper())
    # 1x1, strided: each output pixel came from one input pixel, every stride-th of each row
    # and column. Interleaved with zeros by padding a size-1 axis after each spatial one.
    (sh, sw), part = strides, tf.nn.conv2d(dy, turned, 1, "VALID")
    shape = tf.shape(part)
    spread = tf.pad(part[:, :, None, :, None, :], [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
    spread = tf.reshape(spread, [shape[0], shape[1] * sh, shape[2] * sw, shape[3]])
    return tf.slice(spread, [0, 0, 0, 0], [-1, input_shape[1], input_shape[2], -1])  # ceil(side / s) * s >= side


@keras.saving.register_keras_serializable(package="nstyle")
class InputGradConv2D(keras.layers.Conv2D):
    """A Conv2D whose input gradient is a forward convolution, once :meth:`freeze` has turned its kernel.

    Until then (and for convolutions :func:`has_forward_gradient` declines) it is a plain Conv2D.
    """

    _turned: tf.Tensor | None = None

    def freeze(self) -> None:
        """Turn the kernel for the gradient, once the weights are final (a feature network's are)."""
        fast = self.data_format == "channels_last" and has_forward_gradient(
            self.kernel_size, self.strides, self.padding, self.dilation_rate, self.groups
        )
        self._turned = tf.constant(turn(keras.ops.convert_to_numpy(self.kernel))) if fast else None

    def convolution_op(self, inputs, kernel):
        if self._turned is None:
            return super().convolution_op(inputs, kernel)
        return conv2d(inputs, tf.convert_to_tensor(kernel), self._turned, self.strides, self.padding)
