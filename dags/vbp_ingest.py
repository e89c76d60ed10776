"""vbp_ingest · 数据接入 (data-contract.md › Inbound). Logic: vbp_monitor.quality.ingest."""
from __future__ import annotations

from airflow.sdk import dag

from vbp_monitor.orchestration.wiring import dag_arguments, dag_doc, rule_tasks, schedule_of

DAG_ID = "vbp_ingest"

ZH_PURPOSE = """读取平台导出文件（`VBP_LANDING_DIR` 中的契约文件），按数据契约与 GX 期望套件校验，隔离问题行，合格行入库。
评判期间即运行日 D 本身（预警期间 = D）。
"""

ZH_BODY = """
除定时运行外，**接收文件有变化时**也应运行：到货后手动 **触发**，或由外部监测（如 FileSensor DAG、平台 SFTP 钩子调用
`airflow dags trigger vbp_ingest`）触发。每天 05:00 先于 06:00 的各规则 DAG 运行。

**读取内容**：接收目录中存在的每个契约文件，按引用顺序（节假日、分局、医疗机构、批次、产品、协议、订单、线下备案、
回款、预付、报量、年度报告、配送企业）。文件为 `NAME.csv`（UTF-8、带 BOM 的 UTF-8 或 GB18030/GBK）或 `NAME.xlsx`
（第一个工作表），表头须符合契约。缺少的文件不改变对应数据表。

**任务**：`migrate`（将数据仓库升级到最新结构）→ `ingest`（接入与校验）→ `notify`（数据质量预警发给数据组，
`VBP_DATA_TEAM_EMAILS`）。

**校验**：每个文件用其 GX 套件（`include/expectations/NAME.json`）校验：列、必填、类型、枚举、取值范围、主键唯一、
对先入库数据表的引用，以及跨列规则（金额 = 数量 × 单价，误差 0.01 以内；响应不早于下单；验收不早于下单日；
期间结束不早于开始；中选产品须有批次和价格；协议须为本批次中选通用名且与机构、批次的协议年度一致；备案须对应线下订单；
分局表中恰有一行 `city`）。
* 表头缺少契约列（或未通过文件级期望）的文件**整体拒收**：不入库任何行；一条 `DATA_QUALITY` 预警（high）指明文件和列。
* 违反行级期望的行进入 `quarantine` 隔离表（文件、数据行号、主键、原始行、原因），不参与任何规则；合格行照常入库。
  每个文件每次运行一条 `DATA_QUALITY` 预警（指标 = 隔离行数），列明套件、未通过的期望和示例主键。
* 合格行按主键更新或插入：重复接入同一文件不产生变化。接入节假日会重建工作日历；订单只使其订单行（新旧下单日）所在月份的月度采购汇总缓存失效，产品、批次或协议使全部月份失效。

**输出**：数据仓库各表、`quarantine` 隔离表、`DATA_QUALITY` 预警（期间 = 运行日 D，`source_file` = 文件），
以及任务返回值：每个文件读取 / 入库 / 隔离 / 拒收的行数。

**参数**：`force_resend` 重新发送本期已通知的数据质量预警；`branch_code` 一般留空（接入不分分局，数据质量预警只发数据组）；本 DAG 无批次参数。

**重新报送更正文件**：把更正后的 `NAME.csv`/`NAME.xlsx` 放入接收目录（替换旧文件）并再次触发 `vbp_ingest`。
该文件的隔离行由新文件的结果替换；同一运行日 D 的重跑在文件通过后把此前的数据质量预警置为已解决。然后重跑受影响期间的规则 DAG。
注意：接入读取的是接收目录**当前**的文件，与逻辑日期无关；对 vbp_ingest“回填”只会重读当前文件（日期只用于标注预警）。
要重建历史数据，先报送文件并触发一次，再回填各规则 DAG。
"""

ENGLISH = """
### Ingest the platform's exports · 数据接入

Daily at 05:00 Asia/Shanghai (before the rule DAGs at 06:00), and **whenever the landing
folder changes**: trigger it by hand (**Trigger**) after a delivery, or let an external
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
  Loading holidays rebuilds the working-day calendar; orders invalidate the monthly
  purchase facts cache of the months of their lines (new and former order dates),
  products, batches or agreements every month of it.

**Outputs**: the warehouse tables, `quarantine`, DATA_QUALITY alerts (period = the run's day
D, `source_file` = the file), and the task's return value: rows read / loaded / quarantined
/ rejected per file.

### Re-delivering a corrected file
Put the corrected `NAME.csv`/`NAME.xlsx` in the landing folder (replacing the old one) and
trigger `vbp_ingest` again. The file's quarantine rows are replaced by the new delivery's; a
run on the same day D resolves the file's earlier DATA_QUALITY alert once the file passes.
Then rerun the rule DAGs of the affected periods.

Ingest loads what is in the landing folder *now*, whatever the logical date: a "backfill"
of vbp_ingest only re-reads the current files (the date only labels its alerts). To rebuild
history, deliver the files and trigger one run, then backfill the rule DAGs.
"""

DOC = dag_doc(DAG_ID, ZH_PURPOSE, ZH_BODY, ENGLISH)


@dag(schedule=schedule_of(DAG_ID), doc_md=DOC, **dag_arguments(DAG_ID))
def vbp_ingest():
    # the notify step mails only the data team: DATA_QUALITY is the only code ingest raises
    rule_tasks("vbp_monitor.quality.ingest", judge="ingest_landing", steps=["migrate"], judge_task_id="ingest")


vbp_ingest()
