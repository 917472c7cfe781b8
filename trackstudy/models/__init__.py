"""Models: the encoder-only transformer (:mod:`.encoder`), its attention backends
(:mod:`.attention`, :mod:`.lsh`), input features (:mod:`.features`) and heads."""

from trackstudy.models.attention import BACKENDS, EXACT_BACKENDS, AttentionContext
from trackstudy.models.encoder import PRESETS, Encoder, EncoderConfig, parameter_count, preset_parameter_counts
from trackstudy.models.heads import FAMILIES, TrackModel, build_model, model_from_config
from trackstudy.models.lsh import LSHConfig

__all__ = ["AttentionContext", "BACKENDS", "EXACT_BACKENDS", "Encoder", "EncoderConfig", "FAMILIES", "LSHConfig",
           "PRESETS", "TrackModel", "build_model", "model_from_config", "parameter_count", "preset_parameter_counts"]
