"""The evaluation suite: the pipeline as a dry run on pinned examples, scored with mlflow.genai.evaluate."""
