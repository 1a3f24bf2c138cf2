"""Feature networks: what they are (registry), how they run (folding, precision), what they return.

- :mod:`.registry`: Keras applications and EfficientNet-Lite0, their preprocessing, layer names,
  Keras 2.2 aliases and weights (ImageNet download, a file, or seeded random).
- :mod:`.efficientnet_lite` and :mod:`.pth`: the offline trained Lite0 and its weights reader.
- :mod:`.folding`: BatchNorm folded into the convolutions before it.
- :mod:`.precision`: float32 / bfloat16 / float16 and the hardware facts that choose among them.
- :mod:`.extractor`: the network cut at the deepest requested layer, folded, in its precision.
"""

from .extractor import FeatureExtractor, activation_floats, default_activation_ratio, feature_extractor
from .registry import (
    CAFFE,
    LITE,
    REGISTRY,
    Backbone,
    LayerInfo,
    Preprocessing,
    describe_layers,
    get_backbone,
    load_model,
    resnet50_keras22_aliases,
    resolve_layer,
)

__all__ = [
    "CAFFE",
    "LITE",
    "REGISTRY",
    "Backbone",
    "FeatureExtractor",
    "activation_floats",
    "default_activation_ratio",
    "LayerInfo",
    "Preprocessing",
    "describe_layers",
    "feature_extractor",
    "get_backbone",
    "load_model",
    "resnet50_keras22_aliases",
    "resolve_layer",
]
