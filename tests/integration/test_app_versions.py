"""App versions against a real MLflow server: a new configuration's first job already reports its LoggedModel."""

import uuid

from mlflow import MlflowClient

from composer.app_version import AppVersions
from composer.compose import ReplyComposer
from composer.llm import LLMClient
from composer.projects import load_projects
from composer.prompts import PromptStore
from composer.settings import ComposerSettings
from llm_gateway.main import build_app as build_gateway
from llm_gateway.settings import GatewaySettings
from technoshare_common.schemas import Outcome
from tests.support.jobs import arxiv_job
from tests.support.scripted_llm import ScriptedLLM
from tests.support.servers import serve_in_thread

ARXIV = "https://arxiv.org/abs/2106.09685"


async def test_the_first_job_of_a_new_configuration_reports_the_version_registered_meanwhile(
    mlflow_server: str,
) -> None:
    experiment = f"app-versions-{uuid.uuid4().hex[:8]}"  # no version of this configuration exists yet
    llm = ScriptedLLM()
    llm.slow_seconds = 4.0  # a job takes seconds; registering a version takes well under one
    with serve_in_thread(llm.app) as upstream:
        gateway_settings = GatewaySettings(LLM_UPSTREAM_BASE_URL=f"{upstream}/v1", OPENAI_API_KEY="sk-upstream")  # type: ignore[arg-type]
        with serve_in_thread(build_gateway(gateway_settings)) as gateway_url:
            settings = ComposerSettings(
                LLM_GATEWAY_URL=gateway_url,
                STAGE_A_MODEL="scripted",
                STAGE_B_MODEL="scripted",  # type: ignore[arg-type]
                STAGE_A_TOOLS=False,
            )
            versions = AppVersions(mlflow_server, experiment)
            client = LLMClient(settings)
            composer = ReplyComposer(
                settings,
                llm=client,
                prompts=PromptStore(settings.prompts_dir),
                projects=load_projects(settings.projects_file),
                app_versions=versions,
            )
            evidence = arxiv_job("app-version")[1].evidence
            try:
                first = await composer.compose_evidence(ARXIV, "slow-please", evidence)
                second = await composer.compose_evidence(ARXIV, "again", evidence)
            finally:
                await client.aclose()

    assert first.outcome == Outcome.success, first.error
    assert first.app_version and first.app_version_id, "the first job's version was registered during the job"
    assert (second.app_version, second.app_version_id) == (first.app_version, first.app_version_id)
    model = MlflowClient(mlflow_server).get_logged_model(first.app_version_id)
    assert model.name == first.app_version
    assert model.params["model.stage_b"] == "scripted"
