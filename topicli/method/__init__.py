"""The method: topics, encoders, embedding, clustering, scoring, labelling, cls_model and its training,
evaluation, what a run records of its posts, and the pipeline that joins them. No CLI, rendering, Azure or
Triton client here."""

# The modules other layers import. `clustering`, `evaluation` and `keywords` are reached through
# `pipeline` (and `training`); `base` holds the definitions several modules share.
__all__ = [
    "adaptation",
    "base",
    "calibration",
    "classifier",
    "cross_encoder",
    "cross_training",
    "embedding",
    "encoder_export",
    "encoders",
    "labelling",
    "languages",
    "pipeline",
    "records",
    "rename",
    "scoring",
    "timeline",
    "tokens",
    "topics",
    "training",
]
