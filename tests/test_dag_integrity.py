"""DAG integrity: every DAG imports, is documented and owned, retries, and parses fast."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vbp_monitor.core.catalog import DAGS, rule_table_md

REPO = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = ("great_expectations", "pandas", "openpyxl", "docx", "vbp_monitor.rules", "vbp_monitor.quality")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == sorted(DAGS)


def test_every_rule_dag_documents_its_rules_from_the_catalog(dagbag):
    for dag_id, dag in dagbag.dags.items():
        if DAGS[dag_id].rule_codes:
            assert rule_table_md(dag_id) in dag.doc_md, dag_id


def test_every_wired_task_names_a_function_of_its_module(dagbag):
    # DAG files name their logic as strings (imported when a task runs, not at parse)
    from vbp_monitor.orchestration.wiring import WIRED, resolve

    assert len({module for module, _ in WIRED}) == len(DAGS)
    for module, names in WIRED:
        for name in names:
            assert callable(resolve(module, name)), (module, name)


def test_ingest_is_wired_like_the_rule_dags(dagbag):
    dag = dagbag.dags["vbp_ingest"]
    assert {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks} == {
        "migrate": ["ingest"], "ingest": ["notify"], "notify": []}


def test_every_dag_is_documented_owned_tagged_and_retried(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.description, dag_id
        assert dag.doc_md and "backfill" in dag.doc_md.lower(), dag_id
        assert dag.tags, dag_id
        assert not dag.catchup, dag_id
        for task in dag.tasks:
            assert task.owner == "vbp-data-team", (dag_id, task.task_id)
            assert task.retries >= 2, (dag_id, task.task_id)


# Time the DAG file alone: Airflow itself is already imported in the DAG processor.
PROBE = """
import json, sys, time, importlib.util
import airflow.sdk, airflow.timetables.trigger, airflow.providers.standard.decorators.python  # Airflow itself: the baseline of any TaskFlow DAG
from airflow.sdk import dag, task, Param  # noqa
path, heavy = sys.argv[1], sys.argv[2:]
spec = importlib.util.spec_from_file_location("dag_under_test", path)
module = importlib.util.module_from_spec(spec)
start = time.perf_counter()
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "heavy": [m for m in heavy if m in sys.modules]}))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_heavy_imports(dag_file):
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    out = subprocess.run([sys.executable, "-c", PROBE, str(dag_file), *HEAVY], env=env,
                         capture_output=True, text=True, check=True, cwd=REPO)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["heavy"] == [], f"{dag_file.name} imports {figures['heavy']} at parse time"
    assert figures["seconds"] < 0.5, f"{dag_file.name} parsed in {figures['seconds']:.2f}s"


CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def _first_prose_line(doc: str) -> str:
    """The first non-blank line of a doc_md with its Markdown markers (#, *, -, >) stripped."""
    for line in doc.splitlines():
        text = line.strip().lstrip("#*->| ").strip()
        if text:
            return text
    return ""


def test_every_doc_md_is_chinese_first_with_the_catalogs_schedule(dagbag):
    for dag_id, dag in dagbag.dags.items():
        first = _first_prose_line(dag.doc_md)
        cjk, latin = CJK.search(first), LATIN_WORD.search(first)
        assert cjk and (not latin or cjk.start() < latin.start()), (dag_id, first)
        assert DAGS[dag_id].schedule_zh in dag.doc_md, dag_id
        chinese, _, english = dag.doc_md.partition("\n---\n")
        assert english and "## English" in english, dag_id
        for heading in ("**用途**", "**计划**", "**任务**", "**输出**", "**参数**", "### 回填"):
            assert heading in chinese, (dag_id, heading)
        assert "airflow backfill create" in chinese and "### Backfill" in english, dag_id


def test_every_dag_has_a_chinese_tag(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert any(CJK.search(tag) for tag in dag.tags), (dag_id, dag.tags)
        assert "集采监管" in dag.tags and DAGS[dag_id].title in dag.tags, (dag_id, dag.tags)
