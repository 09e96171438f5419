"""The seed reference's examples run as written (scripts provided, LLM = the fake)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gleitzeit import GleitzeitClient, SyncGleitzeitClient
from gleitzeit.testing import FakeOllama

from .fixtures import seed_examples

pytestmark = pytest.mark.anyio
SCRIPTS = Path(__file__).parent / "fixtures" / "seed_scripts"


@pytest.fixture
def in_scripts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run from a copy of the scripts folder: the seed's paths are relative to the CWD."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(SCRIPTS, work)
    monkeypatch.chdir(work)
    return work


async def test_parallel_processing_with_final_report(ollama: FakeOllama, in_scripts: Path) -> None:
    """Example 3 as written: three sources, merge, two analyses, an LLM report."""
    async with GleitzeitClient(persistence="memory", ollama_url=ollama.url) as client:
        results = await client.run_workflow(seed_examples.PARALLEL_PROCESSING)
    report = results["Final_Report"]
    stats = json.dumps(results["Statistical_Analysis"]["result"], ensure_ascii=False)
    predictions = json.dumps(results["ML_Prediction"]["result"], ensure_ascii=False)
    prompt = f"Create report from stats: {stats} and predictions: {predictions}"
    assert report["response"] == FakeOllama.reply_for("llama3.2:latest", prompt)
    assert results["Merge_Data"]["result"]["count"] == 9


async def test_data_pipeline(ollama: FakeOllama, in_scripts: Path) -> None:
    """Example 1 as written: files with args, an LLM analysis, and the save step whose
    code embeds the reply in a string literal."""
    async with GleitzeitClient(persistence="memory", ollama_url=ollama.url) as client:
        results = await client.run_workflow(seed_examples.DATA_PIPELINE)
    assert results["Transform Data"]["result"][0] == {"id": 1, "db": "production", "value": 20}
    assert results["Save Results"]["result"] == "Saved 5 records with analysis"
    saved = json.loads((in_scripts / "results.json").read_text())
    assert saved["analysis"] == results["Generate Report"]["response"]
    assert len(saved["data"]) == 5


def test_data_processing_through_the_sync_client(in_scripts: Path) -> None:
    """The run_workflow dict example, from plain code."""
    with SyncGleitzeitClient(persistence="memory") as client:
        results = client.run_workflow(seed_examples.DATA_PROCESSING)
    assert results["Process Data"]["result"] == {"input": "data.csv", "rows": 3}


async def test_topic_extraction(ollama: FakeOllama) -> None:
    """Example 2's generated workflow, then a chat over its results."""
    async with GleitzeitClient(persistence="memory", ollama_url=ollama.url) as client:
        topics = await client.run_workflow(seed_examples.ALL["topic_extraction"])
        all_topics = "\n".join(str(result) for result in topics.values())
        report = await client.chat(
            f"Create a comprehensive report from these topics:\n{all_topics}"
        )
    assert list(topics) == ["Extract_a", "Extract_b"]
    assert report.startswith("Reply ")
