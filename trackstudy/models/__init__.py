"""Models: the encoder-only transformer (:mod:`.encoder`), its attention backends
(:mod:`.attention`, :mod:`.lsh`), input features (:mod:`.features`) and heads; the edge models
over doublet graphs: the interaction network (:mod:`.gnn`) and the encoder over doublet tokens
(:mod:`.doublet`)."""

from trackstudy.models.attention import BACKENDS, EXACT_BACKENDS, AttentionContext
from trackstudy.models.encoder import PRESETS, Encoder, EncoderConfig, parameter_count, preset_parameter_counts
from trackstudy.models.heads import EDGE_FAMILIES, FAMILIES, TrackModel, build_model, model_from_config
from trackstudy.models.lsh import LSHConfig

__all__ = ["AttentionContext", "BACKENDS", "EDGE_FAMILIES", "EXACT_BACKENDS", "Encoder", "EncoderConfig", "FAMILIES",
           "LSHConfig", "PRESETS", "TrackModel", "build_model", "model_from_config", "parameter_count",
           "preset_parameter_counts"]
