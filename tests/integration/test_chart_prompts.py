"""Every prompt composer may load (its compose mode's and the fallback's) is in the chart's data ConfigMap, mounted
into composer and registered by the prompt-sync Job: composer reads the mount, not the image, in a cluster."""

from pathlib import Path

from tests.support.chart import render_chart
from tests.support.servers import ROOT

PROMPTS = sorted(path.name for path in (ROOT / "data" / "prompts").glob("*.yaml"))


def test_every_prompt_is_in_the_configmap_in_composer_and_in_the_sync_job() -> None:
    documents = render_chart()
    [data] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-data")]
    assert PROMPTS and sorted(name for name in data["data"] if name.startswith("stage_")) == PROMPTS
    [composer] = [d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-composer")]
    [sync] = [d for d in documents if d["kind"] == "Job" and d["metadata"]["name"].endswith("-prompt-sync")]
    for workload, prefix in ((composer, "prompts/"), (sync, "")):
        volumes = workload["spec"]["template"]["spec"]["volumes"]
        items = [item for volume in volumes if "configMap" in volume for item in volume["configMap"].get("items", [])]
        mounted = sorted(Path(item["path"]).name for item in items if item["path"].startswith(prefix + "stage_"))
        assert mounted == PROMPTS, (workload["metadata"]["name"], mounted)
