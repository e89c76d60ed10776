"""vbp_ingest · 数据接入 (data-contract.md › Inbound). Logic: vbp_monitor.quality.ingest."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.orchestration.wiring import BACKFILL_DOC, dag_arguments, rule_tasks, schedule_of

DAG_ID = "vbp_ingest"

DOC = """
## 数据接入 · ingest the platform's exports

Daily at 05:00 Asia/Shanghai (before the rule DAGs at 06:00), and **whenever the landing
folder changes**: trigger it by hand (*Trigger DAG*) after a delivery, or let an external
sensor/watcher (e.g. a FileSensor DAG or the platform's SFTP hook calling
`airflow dags trigger vbp_ingest`) trigger it.

**What it loads**: every contract file present in `VBP_LANDING_DIR`, in reference order
(holidays, branches, institutions, batches, products, agreements, orders, offline_filings,
payments, prepayments, volume_reports, annual_reports, distributors). Each is `NAME.csv`
(UTF-8, UTF-8 with BOM or GB18030/GBK) or `NAME.xlsx` (first sheet) with the contract's
header. A file that is absent leaves its table as it was.

**Tasks**: `migrate` (brings the warehouse to the latest schema migration) → `ingest` →
`notify` (DATA_QUALITY alerts go to the data team, `VBP_DATA_TEAM_EMAILS`).

**Validation**: every file is validated with its GX suite (`include/expectations/NAME.json`):
columns, required values, types, enumerations, ranges, key uniqueness, references to the
tables loaded before it, and cross-column rules (amount = quantity × unit price within 0.01,
response not before order, acceptance not before the order day, period end not before
start, selected products carry batch and price, agreements use a selected generic of their
batch and share the agreement years of their institution and batch, filings reference
off-platform orders, exactly one `city` row in branches).

* A file whose header lacks a contract column (or that fails a file-level expectation) is
  **rejected whole**: nothing of it loads; one `DATA_QUALITY` alert (high) names the file
  and the column.
* Rows that break a row-level expectation go to the `quarantine` table (file, data row
  number, key, raw row, reasons) and never reach a rule; the good rows load. One
  `DATA_QUALITY` alert per file and run (metric = rows quarantined) names the suite, the
  failed expectations and example keys.
* Good rows are upserted by primary key: re-ingesting the same files changes nothing.
  Loading holidays rebuilds the working-day calendar; orders, products, batches or
  agreements invalidate the monthly purchase facts cache.

**Outputs**: the warehouse tables, `quarantine`, DATA_QUALITY alerts (period = the run's day
D, `source_file` = the file), and the task's return value: rows read / loaded / quarantined
/ rejected per file.

### Re-delivering a corrected file
Put the corrected `NAME.csv`/`NAME.xlsx` in the landing folder (replacing the old one) and
trigger `vbp_ingest` again. The file's quarantine rows are replaced by the new delivery's; a
run on the same day D resolves the file's earlier DATA_QUALITY alert once the file passes.
Then rerun the rule DAGs of the affected periods.
""" + BACKFILL_DOC.format(dag_id=DAG_ID) + """
Ingest loads what is in the landing folder *now*, whatever the logical date: a "backfill"
of vbp_ingest only re-reads the current files (the date only labels its alerts). To rebuild
history, deliver the files and trigger one run, then backfill the rule DAGs.
"""


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_ingest():
    # the notify step mails only the data team: DATA_QUALITY is the only code ingest raises
    rule_tasks("vbp_monitor.quality.ingest", judge="ingest_landing", steps=["migrate"], judge_task_id="ingest")


vbp_ingest()
