"""evaluation: the pipeline as a dry run on pinned examples, scored with mlflow.genai.evaluate, and the
prompt registry's commands (sync, aliases), shipped as the eval image rather than inside composer."""
