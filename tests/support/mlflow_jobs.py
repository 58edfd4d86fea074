"""A live job as the tests find it in MLflow: its successful run, and that run's trace."""

from typing import Any

from mlflow import MlflowClient

JOBS_EXPERIMENT = "technoshare_commentator"


def job_trace(client: MlflowClient, job_id: str) -> Any:
    """The trace of the job's successful run, once the run is logged with its trace id; None until then."""
    experiment = client.get_experiment_by_name(JOBS_EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], f"tags.job_id = '{job_id}' and tags.outcome = 'success'")
    if not runs or "trace_id" not in runs[0].data.tags:
        return None
    return client.get_trace(runs[0].data.tags["trace_id"])
