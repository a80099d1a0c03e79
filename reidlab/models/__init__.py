"""Models: timm backbones, heads, baselines and one module per paper."""

from reidlab.models.backbones import PRESETS, Backbone, CNNBackbone, ViTBackbone, create_backbone, tokens_to_map
from reidlab.models.baseline import CrossModalBaseline, MultiModalBaseline, NonLocal
from reidlab.models.heads import BNNeck, GeM, init_classifier, init_kaiming

__all__ = [
    "PRESETS", "Backbone", "BNNeck", "CNNBackbone", "CrossModalBaseline", "GeM", "MultiModalBaseline", "NonLocal",
    "ViTBackbone", "create_backbone", "init_classifier", "init_kaiming", "tokens_to_map",
]
