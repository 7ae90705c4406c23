"""The method: topics, encoders, embedding, clustering, scoring, labelling, cls_model and its training,
evaluation, run folders and the pipeline that joins them. No CLI, rendering, Azure or Triton client here."""
