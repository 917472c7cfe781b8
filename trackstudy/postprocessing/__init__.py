"""Post-processing: model outputs -> track candidates in the Kaggle submission format."""

from trackstudy.postprocessing.track_formation import (
    ClassTrackParams,
    EmbeddingTrackParams,
    ParamTrackParams,
    form_tracks,
    tracks_from_classes,
    tracks_from_embeddings,
    tracks_from_params,
    tune_track_formation,
)

__all__ = ["ClassTrackParams", "EmbeddingTrackParams", "ParamTrackParams", "form_tracks",
           "tracks_from_classes", "tracks_from_embeddings", "tracks_from_params", "tune_track_formation"]
