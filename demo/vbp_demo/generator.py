"""The demo data set: a deterministic landing folder for a city (赣州) with planted violations.

``generate(landing_dir, seed, scale)`` writes every file of data-contract.md for a city
bureau, six branch bureaus and ~120 × ``scale`` institutions: four procurement batches
(national / alliance / provincial drugs, provincial high-value consumables), products,
agreements, 15 months of orders (2024-10-01 … 2025-12-31) with payments and off-platform
filings, prepayments, volume reports, annual reports (DOCX / Markdown / text) and a few
optional files. Most institutions behave; the cases in ``PLANTED`` (planted.toml) break one rule each so
that every rule code of domain.md fires when the DAGs run on the dates of ``DEMO_RUNS``.

Business dates stop at the snapshot day ``SNAPSHOT_END`` (orders end on 2025-12-31; the
payments, filings, prepayment recoveries and annual reports that follow them run into
January 2026).

Formats on purpose: ``institutions.csv`` is GB18030 (platform exports are often GBK),
``products.csv`` is UTF-8 with BOM, volume reports come as ``volume_reports.xlsx``, the
rest is UTF-8. Same seed and scale → byte-identical files (XLSX/DOCX metadata and zip
timestamps are fixed).

``scale`` multiplies the number of institutions and, unless ``order_scale`` is given, the
order lines of each institution as well: scale=25 gives ~3,000 institutions and ~1,000,000
order lines a month. Files are written row by row (streaming). The planted manifest holds
for scale=1; at other scales the planted institutions that do not exist are skipped.

Heavy libraries (openpyxl, python-docx) are imported inside the functions that write them.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import random
import re
import shutil
import time
import tomllib
import zipfile
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from vbp_monitor.core.catalog import DAGS, RULES
from vbp_monitor.core.prc_calendar import STATUTORY, add_months, cycle_month_bounds, month_bounds
from vbp_monitor.model.contract import FILES

# ------------------------------------------------------------------ the demo's frame
FIRST_MONTH = dt.date(2024, 10, 1)
LAST_MONTH = dt.date(2025, 12, 1)
SNAPSHOT_END = dt.date(2026, 1, 31)  # nothing is dated after it
REPORT_YEAR = 2025
FIXED_DOC_TIME = dt.datetime(2026, 1, 2, 9, 0, 0)  # XLSX/DOCX core properties and zip entries

CITY = ("360700", "赣州市医疗保障局", "city@ganzhou.example")
# code, branch name, county, institutions at scale 1, mail slug
BRANCHES = (
    ("360702", "章贡分局", "章贡区", 28, "zhanggong"),
    ("360703", "南康分局", "南康区", 24, "nankang"),
    ("360704", "赣县分局", "赣县区", 20, "ganxian"),
    ("360781", "瑞金分局", "瑞金市", 20, "ruijin"),
    ("360722", "信丰分局", "信丰县", 16, "xinfeng"),
    ("360723", "大余分局", "大余县", 12, "dayu"),
)
TOWNS = {
    "360702": ("沙石镇", "水东镇", "水西镇", "水南镇", "东外街道", "南外街道", "解放街道", "赣江街道",
               "黄金岭街道", "沙河镇"),
    "360703": ("唐江镇", "凤岗镇", "潭口镇", "龙岭镇", "镜坝镇", "横市镇", "浮石乡", "赤土乡", "横寨乡", "朱坊乡",
               "太窝乡", "三江乡", "隆木乡", "坪市乡", "大坪乡", "麻双乡"),
    "360704": ("梅林镇", "王母渡镇", "沙地镇", "田村镇", "韩坊镇", "湖江镇", "储潭镇", "五云镇", "白鹭乡",
               "南塘镇", "大埠乡"),
    "360781": ("象湖镇", "沙洲坝镇", "谢坊镇", "武阳镇", "叶坪乡", "壬田镇", "九堡镇", "瑞林镇", "黄柏乡",
               "云石山乡", "泽覃乡", "大柏地乡"),
    "360722": ("嘉定镇", "大塘埠镇", "古陂镇", "大桥镇", "新田镇", "安西镇", "小江镇", "铁石口镇", "大阿镇",
               "油山镇"),
    "360723": ("南安镇", "新城镇", "樟斗镇", "池江镇", "青龙镇", "左拔镇", "黄龙镇", "吉村镇", "浮江乡",
               "河洞乡"),
}
PRIVATE_NAMES = ("仁济医院", "康复医院", "口腔医院", "眼科医院", "中西医结合医院", "骨科医院", "妇产医院", "安康医院")

# The first institutions of each branch, H<branch>0001 … (the planted cases live here):
# name, ownership, grade, kind.
# The named institutions of each branch: name, ownership, grade, kind (a data file).
CORE = {branch: tuple(tuple(row) for row in rows) for branch, rows in
        json.loads((Path(__file__).with_name("core_institutions.json")).read_text(encoding="utf-8")).items()}
# Military and private institutions that signed agreements (seed 001 §四(一)).
CORE_SIGNERS = {"H3607020005": ("NVBP10",), "H3607020006": ("NVBP10",), "H3607030004": ("NVBP10",)}

DISTRIBUTORS = (
    ("PS001", "国药控股赣州有限公司", "order@gkgz.example.com"),
    ("PS002", "华润江西医药有限公司", "service@crjx.example.com"),
    ("PS003", "九州通医药集团江西有限公司", "jzt-jx@example.com"),
    ("PS004", "江西南华医药有限公司", ""),
    ("PS005", "上药控股江西有限公司", "sph-jx@example.com;sph-jx-kf@example.com"),
)

# batch code, name, level, category, start, cycle months, report deadline
BATCHES = (
    ("NVBP10", "第十批国家组织药品集中带量采购", "national", "drug", dt.date(2025, 1, 1), 24, dt.date(2024, 11, 15)),
    ("ALLI2025", "2025年省际联盟药品集中带量采购", "alliance", "drug", dt.date(2025, 4, 10), 24, dt.date(2025, 3, 14)),
    ("JXYP2025", "江西省2025年药品集中带量采购", "provincial", "drug", dt.date(2025, 7, 1), 24, dt.date(2025, 6, 13)),
    ("JXHC2025", "江西省2025年冠脉支架及人工晶体集中带量采购", "provincial", "high_value_consumable",
     dt.date(2025, 3, 1), 24, dt.date(2025, 2, 14)),
)
BATCH_BY_CODE = {b[0]: b for b in BATCHES}


@dataclass(frozen=True)
class ProductDef:
    code: str
    generic: str
    form: str
    spec: str
    maker: str
    category: str
    passed: bool
    role: str  # S selected, L non-selected below the highest selected price, H above it, N not evaluated, X no batch
    price: int  # 1/10000 yuan: selected price (S), else the usual unit price


def _y(yuan: str) -> int:
    """'3.12' → 31200 (money is handled in 1/10000 yuan)."""
    whole, _, frac = yuan.partition(".")
    return int(whole) * 10000 + int((frac + "0000")[:4])


def _tuples(value):
    """JSON lists as (nested) tuples, the shape of the generator's tables."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


# generic → (category, batch or None, dosage form, specification, demand weight, products)
# products: (maker, role, passed, price); a data file.
GENERICS: tuple = _tuples(json.loads(Path(__file__).with_name("generics.json").read_text(encoding="utf-8")))
VBP_DRUGS = tuple(g[0] for g in GENERICS if g[1] == "drug" and g[2])
HVC_GENERICS = tuple(g[0] for g in GENERICS if g[1] == "high_value_consumable" and g[2])
# monthly demand at scale 1 by grade (boxes / pieces)
DRUG_DEMAND = {"三级": 2000, "二级": 600, "一级": 110}
OTHER_DEMAND = {
    "人血白蛋白": {"三级": 60, "二级": 15},
    "注射用头孢曲松钠": {"三级": 800, "二级": 250, "一级": 60},
    "复方丹参滴丸": {"三级": 600, "二级": 200, "一级": 80},
    "一次性使用输液器": {"三级": 8000, "二级": 2000, "一级": 400},
    "冠脉药物洗脱支架": {"三级": 25, "二级": 4},
    "人工晶体": {"三级": 30, "二级": 8},
    "心脏起搏器": {"三级": 2},
    "一次性使用吻合器": {"三级": 10, "二级": 2},
}
PRE_BATCH_PRICE_FACTOR = 2.6  # what a selected product cost before its batch started
LINES_PER_PRODUCT_MONTH = {"三级": 2.0, "二级": 1.2, "一级": 0.8}  # at scale 1
AGREED_RATIO = {"drug": "0.70", "high_value_consumable": "0.80"}
PREPAY_DISBURSE_PERCENT = 30  # default profile: 30% of the agreed amount from cycle month 1
ALBUMIN = "人血白蛋白"
CEFTRIAXONE = "注射用头孢曲松钠"
STAPLER = "一次性使用吻合器"

REPORT_HEADINGS = ("总体进展", "具体工作落实情况", "存在的问题", "下一步打算")
HEADING_NUMBERS = ("一、", "二、", "三、", "四、")


# ------------------------------------------------------------------ planted cases
def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _first_working_day_after_month(month_day: dt.date) -> str:
    """Logical date of the monthly run that judges the month containing ``month_day``."""
    nxt = add_months(month_day.replace(day=1), 1)
    return STATUTORY.first_working_day_of_month(nxt.year, nxt.month).isoformat()


M = _first_working_day_after_month  # run date of the monthly DAGs for a judged day
INGEST_DAY = "2026-02-02"  # after every business date of the snapshot
INGEST_DAG = next(dag_id for dag_id, dag in DAGS.items() if dag.period_kind == "ingest")

def _dag_of(rule_code: str) -> str:
    """The DAG that raises a rule (catalog); the demo's data quality case is ingest's."""
    dag_id = RULES[rule_code].dag_id
    return INGEST_DAG if dag_id == "*" else dag_id


def _case(rule_code: str, logical_date: str, why: str, **subject) -> dict:
    case = {"rule_code": rule_code, "dag_id": _dag_of(rule_code), "logical_date": logical_date}
    case.update(subject)
    case["why"] = why
    return case


# Institutions of the planted cases (all exist at scale 1).
I_GZ1, I_GZTCM, I_ZGQ, I_MIL, I_RENAI = "H3607020001", "H3607020002", "H3607020004", "H3607020005", "H3607020006"
I_NK1, I_NKTCM, I_NKMCH, I_BOAI = "H3607030001", "H3607030002", "H3607030003", "H3607030004"
I_GX1, I_GXTCM, I_GXMCH, I_JK = "H3607040001", "H3607040002", "H3607040003", "H3607040004"
I_RJ1, I_RJTCM, I_RJMCH, I_KH = "H3607810001", "H3607810002", "H3607810003", "H3607810004"
I_XF1, I_XFTCM, I_XFMCH = "H3607220001", "H3607220002", "H3607220003"
I_DY1, I_DYTCM, I_DYMCH = "H3607230001", "H3607230002", "H3607230003"

# Planted one-off orders (fixed ids; the generated ones never reach sequence 900000).
O_SPRING = "O20250126900001"
O_LATE_RESPONSE = "O20250609900001"
O_ESCALATED = "O20251118900001"
O_PAY_PUBLIC = "O20250117900001"
O_PAY_PRIVATE = "O20250117900002"
O_PAY_PRIVATE_ON_TIME = "O20250117900003"
O_FILED_LATE = "O20250430900001"
O_FILED_ON_DEADLINE = "O20250430900002"
O_NOT_FILED = "O20250820900001"
O_ASSESS_HVC = "O20251210900001"  # the annual assessment's case (DAG 8): a large offline stapler purchase
O_BAD_QUANTITY = "O20250312990001"
O_BAD_PRODUCT = "O20250312990002"
UNKNOWN_PRODUCT = "YP99999"
BAD_ORDER_IDS = (O_BAD_QUANTITY, O_BAD_PRODUCT)

# The names planted.toml may use for a subject's value.
_SYMBOLS: dict[str, object] = {
    **{name: value for name, value in list(globals().items()) if name.startswith(("I_", "O_"))},
    "CITY": CITY[0], "BAD_ORDER_IDS": list(BAD_ORDER_IDS),
}


def _planted(table: str) -> list[dict]:
    """The cases of ``table`` in planted.toml (judged_day → the monthly run judging its month)."""
    data = tomllib.loads(Path(__file__).with_name("planted.toml").read_text(encoding="utf-8"))
    cases = []
    for entry in data[table]:
        subject = {key: _SYMBOLS.get(value, value) if isinstance(value, str) else value
                   for key, value in entry.items() if key not in ("rule_code", "judged_day", "logical_date", "why")}
        logical_date = M(_d(entry["judged_day"])) if "judged_day" in entry else entry["logical_date"]
        cases.append(_case(entry["rule_code"], logical_date, entry["why"], **subject))
    return cases


# The cases that break one rule each: their run raises them (planted.toml).
PLANTED: list[dict] = _planted("planted")
# Cases built to sit exactly on a boundary: the run of ``logical_date`` must NOT raise them.
BOUNDARY_CASES: list[dict] = _planted("boundary")

def _monthly_run_days() -> list[str]:
    days, month = [], dt.date(2025, 2, 1)
    while month <= dt.date(2026, 1, 1):
        days.append(STATUTORY.first_working_day_of_month(month.year, month.month).isoformat())
        month = add_months(month, 1)
    return days


_MONTHLY_RUNS = _monthly_run_days()
# The annual assessment of REPORT_YEAR on its scheduled day (default profile: 1 February).
ASSESSMENT_DAY = f"{REPORT_YEAR + 1}-02-01"
# The branch whose public institutions' high-value-consumable rate over the year falls below 80 %.
ASSESSMENT_BRANCH = "360723"
# The daily DAGs run on chosen days: the planted ones plus ordinary days (nothing to report).
_DAILY_RUNS = {
    "vbp_order_response": sorted(["2025-01-29", "2025-02-07", "2025-03-12", "2025-06-12", "2025-06-14",
                                  "2025-09-17", "2025-11-21", "2025-11-23"]),
    "vbp_annual_report_collection": ["2026-01-02", "2026-01-05", "2026-01-10", "2026-01-14",
                                     "2026-01-16", "2026-01-20"],
}
# Every DAG of the catalog, in its order: ingest once, the monthly DAGs every month.
DEMO_RUNS: dict[str, list[str]] = {
    dag_id: {"ingest": [INGEST_DAY], "month": list(_MONTHLY_RUNS), "year": [ASSESSMENT_DAY]}.get(dag.period_kind)
    or _DAILY_RUNS.get(dag_id, [])
    for dag_id, dag in DAGS.items()
}


# ------------------------------------------------------------------ small helpers
def money(value: int) -> str:
    """1/10000 yuan → '12.50', '3.12', '0.0125' (at least two decimals)."""
    if value >= 0:
        whole, frac = divmod(value, 10000)
        if frac % 100 == 0:  # the usual case: whole fen
            return f"{whole}.{frac // 100:02d}"
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10000)
    digits = f"{frac:04d}".rstrip("0")
    if len(digits) < 2:
        digits = (digits + "00")[:2]
    return f"{sign}{whole}.{digits}"


def _month_starts() -> list[dt.date]:
    months, month = [], FIRST_MONTH
    while month <= LAST_MONTH:
        months.append(month)
        month = add_months(month, 1)
    return months


class _Days:
    """Days as indices from a fixed origin, with cached strings and working-day lookups."""

    def __init__(self, first: dt.date, last: dt.date):
        self.first = first
        count = (last - first).days + 1
        self.dates = [first + dt.timedelta(days=i) for i in range(count)]
        self.text = [d.isoformat() for d in self.dates]
        self.compact = [d.strftime("%Y%m%d") for d in self.dates]
        self.working = [STATUTORY.is_working_day(d) for d in self.dates]
        self.working_indices = [i for i, w in enumerate(self.working) if w]
        # public payment deadline: the last day of the month after the acceptance month
        self.end_next_month = []
        for d in self.dates:
            nxt = add_months(d.replace(day=1), 1)
            self.end_next_month.append(min(self.index(month_bounds(nxt)[1]), count - 1))

    def index(self, day: dt.date) -> int:
        return (day - self.first).days

    def nth_working_after(self, i: int, n: int) -> int:
        pos = bisect_right(self.working_indices, i)
        return self.working_indices[pos + n - 1]


@dataclass
class Institution:
    code: str
    name: str
    branch_code: str
    ownership: str
    grade: str
    kind: str
    signed: tuple[str, ...] = ()
    distributors: tuple[str, ...] = ()
    usage: dict = field(default_factory=dict)  # generic → (monthly demand, selected product, selected share)

    @property
    def uses_hvc(self) -> bool:
        return self.grade in ("三级", "二级") and self.kind in ("general", "tcm")

    def agreement_batches(self) -> tuple[str, ...]:
        if self.ownership == "public":
            return tuple(b[0] for b in BATCHES)
        return self.signed


# ------------------------------------------------------------------ the generator
class _Generator:
    def __init__(self, landing: Path, seed: int, scale: float, order_scale: float | None):
        self.landing = Path(landing)
        self.rng = random.Random(seed)
        self.scale = scale
        self.order_scale = scale if order_scale is None else order_scale
        self.days = _Days(dt.date(2024, 9, 1), dt.date(2026, 3, 31))
        self.snapshot = self.days.index(SNAPSHOT_END)
        self.counts: dict[str, int] = {}
        self.order_seq = [0] * len(self.days.dates)
        self.history: dict[tuple[str, str], int] = {}  # (institution, generic) → 2024 quantity
        self.assessment_hvc_platform = 0  # ASSESSMENT_BRANCH's public HVC platform amount of REPORT_YEAR
        self.clock = [f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}" for t in range(86400)]
        self._build_products()

    # -- reference data -----------------------------------------------------------
    def _build_products(self) -> None:
        self.products: list[ProductDef] = []
        self.generics: dict[str, dict] = {}
        seq = {"drug": 10000, "high_value_consumable": 20000, "consumable": 30000}
        prefix = {"drug": "YP", "high_value_consumable": "HC", "consumable": "HC"}
        for name, category, batch, form, spec, weight, makers in GENERICS:
            roles: dict[str, list[ProductDef]] = {}
            for maker, role, passed, price in makers:
                seq[category] += 1
                product = ProductDef(f"{prefix[category]}{seq[category]}", name, form, spec, maker, category,
                                     passed, role, _y(price))
                self.products.append(product)
                roles.setdefault(role, []).append(product)
            self.generics[name] = {"category": category, "batch": batch, "weight": weight, "roles": roles}

    def _build_institutions(self) -> None:
        rng = self.rng
        self.branches: list[tuple[str, list[Institution]]] = []
        self.institutions: dict[str, Institution] = {}
        distributor_codes = [d[0] for d in DISTRIBUTORS]
        for code, _name, county, base, _slug in BRANCHES:
            count = max(1, round(base * self.scale))
            members: list[Institution] = []
            core = CORE[code]
            towns = TOWNS[code]
            generated = 0
            for position in range(1, count + 1):
                inst_code = f"H{code}{position:04d}"
                if position <= len(core):
                    name, ownership, grade, kind = core[position - 1]
                    signed = CORE_SIGNERS.get(inst_code, ())
                else:
                    generated += 1
                    draw = rng.random()
                    town = towns[(generated - 1) % len(towns)]
                    round_no = (generated - 1) // len(towns)
                    if draw < 0.80:
                        ownership, grade, kind = "public", "一级", "township"
                        street = town.endswith("街道")  # urban: community health centres
                        if round_no == 0:
                            name = f"{county}{town}{'社区卫生服务中心' if street else '卫生院'}"
                        else:
                            name = f"{county}{town}{'社区卫生服务站' if street else '卫生所'}{round_no + 1}"
                    elif draw < 0.97:
                        ownership, kind = "private", "general"
                        grade = "二级" if rng.random() < 0.3 else "一级"
                        name = f"{county}{town}{PRIVATE_NAMES[rng.randrange(len(PRIVATE_NAMES))]}"
                        if round_no:
                            name += f"（{round_no + 1}部）"
                    else:
                        ownership, grade, kind = "military", "一级", "general"
                        name = f"联勤保障部队{county}{town}门诊部"
                    signed = ("NVBP10",) if ownership != "public" and rng.random() < 0.3 else ()
                dists = tuple(rng.sample(distributor_codes, 2))
                inst = Institution(inst_code, name, code, ownership, grade, kind, signed, dists)
                self._assign_usage(inst)
                members.append(inst)
                self.institutions[inst_code] = inst
            self.branches.append((code, members))

    def _assign_usage(self, inst: Institution) -> None:
        rng = self.rng
        for name, info in self.generics.items():
            if info["batch"] and info["category"] == "drug":
                demand = DRUG_DEMAND[inst.grade] * info["weight"]
            else:
                by_grade = OTHER_DEMAND.get(name, {})
                if info["category"] == "high_value_consumable" and not inst.uses_hvc:
                    continue
                demand = by_grade.get(inst.grade, 0)
            if not demand:
                continue
            demand = max(1, round(demand * (0.7 + 0.6 * rng.random())))
            selected = info["roles"].get("S") or []
            chosen = selected[rng.randrange(len(selected))] if selected else None
            buys_low = "L" in info["roles"] and rng.random() < 0.5
            share = 0.88 + 0.09 * rng.random() if buys_low else 1.0
            inst.usage[name] = (demand, chosen, share)

    # -- writing helpers ------------------------------------------------------------
    def _path(self, name: str, suffix: str = ".csv") -> Path:
        return self.landing / f"{name}{suffix}"

    def _write_small(self, name: str, rows: list[list], encoding: str = "utf-8") -> None:
        with open(self._path(name), "w", newline="", encoding=encoding) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(list(FILES[name].columns))
            writer.writerows(rows)
        self.counts[name] = len(rows)

    def write_reference(self) -> None:
        self._write_small("branches", [[CITY[0], CITY[1], "city", CITY[2]]] + [
            [code, name, "branch", f"{slug}@example.org;{slug}-jg@example.org"]
            for code, name, _county, _base, slug in BRANCHES])
        self._write_small("institutions", [
            [i.code, i.name, i.branch_code, i.ownership, i.grade]
            for _code, members in self.branches for i in members], encoding="gb18030")
        self._write_small("batches", [
            [code, name, level, category, start.isoformat(), str(months), deadline.isoformat() if deadline else ""]
            for code, name, level, category, start, months, deadline in BATCHES])
        rows = []
        for p in self.products:
            selected = p.role == "S"
            rows.append([p.code, p.generic, p.form, p.spec, p.maker, p.category,
                         "true" if p.passed else "false", "true" if selected else "false",
                         self.generics[p.generic]["batch"] if selected else "",
                         money(p.price) if selected else ""])
        self._write_small("products", rows, encoding="utf-8-sig")
        self._write_small("distributors", [list(d) for d in DISTRIBUTORS])
        self._write_small("supplier_sanctions", self.sanction_rows())
        self._write_small("baseline_prices", self.baseline_price_rows())
        # 2027 is not in the statutory package yet: how an operator would add it
        self._write_small("holidays", [
            ["2027-01-01", "false"], ["2027-02-05", "false"], ["2027-02-08", "false"],
            ["2027-02-09", "false"], ["2027-02-10", "false"], ["2027-02-11", "false"],
            ["2027-02-20", "true"]])

    def sanction_rows(self) -> list[list]:
        """失信企业名单 (supplier_sanctions.csv). 江西赣江制药 (its non-evaluated 氨氯地平) from
        2023-05-31 with a blank end: two years under the default profile, to 2025-05-30, so the
        planted May 2025 purchase of 信丰县人民医院 (NON_EVALUATED_PURCHASE) is one too.
        The other maker has no product in the demo (a sanction that matches nothing)."""
        return [["江西赣江制药有限公司", SANCTION_START, "", "中选后不按协议供应，拒不承担药品替换费用"],
                ["江西省某医药科技有限公司", "2024-03-01", "", "未按约定供应中选产品"]]

    def baseline_price_rows(self) -> list[list]:
        """集采前基期价格 (baseline_prices.csv), per batch and selected generic name: the highest
        price of the generic name before the batch; the last generic name has none (the
        assessment says it cannot estimate its savings)."""
        rows = [[info["batch"], name, money(max(p.price for p in self.products if p.generic == name))]
                for name, info in self.generics.items() if info["batch"]]
        return rows[:-1]

    # -- agreements ------------------------------------------------------------------
    def _agreement_plan(self) -> list[dict]:
        """One agreement per institution × selected generic of the batches it takes part in."""
        plan = []
        for _code, members in self.branches:
            for inst in members:
                for batch_code in inst.agreement_batches():
                    _c, _n, _l, category, start, _m, _dl = BATCH_BY_CODE[batch_code]
                    period_end = add_months(start, 12) - dt.timedelta(days=1)
                    generic_names = [g[0] for g in GENERICS if g[2] == batch_code]
                    for position, generic in enumerate(generic_names, 1):
                        usage = inst.usage.get(generic)
                        if usage is None:
                            continue
                        demand, product, share = usage
                        agreed = round(12 * demand * share * (0.80 + 0.08 * self.rng.random()))
                        if (inst.code, generic) == (I_RJ1, "瑞舒伐他汀"):
                            agreed = 50000  # examples.md 2
                        plan.append({
                            "agreement_id": f"XY-{batch_code}-{inst.code}-{position:02d}",
                            "institution": inst, "batch_code": batch_code, "generic": generic,
                            "period_start": start, "period_end": period_end, "agreed": agreed,
                            "ratio": AGREED_RATIO[category], "amount": agreed * product.price,
                        })
        return plan

    def write_agreements(self) -> list[dict]:
        plan = self._agreement_plan()
        self._write_small("agreements", [[
            a["agreement_id"], a["institution"].code, a["batch_code"], a["generic"],
            a["period_start"].isoformat(), a["period_end"].isoformat(), str(a["agreed"]), a["ratio"],
            money(a["amount"])] for a in plan])
        return plan

    # -- prepayments -------------------------------------------------------------------
    def write_prepayments(self, plan: list[dict]) -> None:
        totals: dict[tuple[str, str], list] = {}
        for a in plan:
            key = (a["institution"].code, a["batch_code"])
            entry = totals.setdefault(key, [0, a["period_start"]])
            entry[0] += a["amount"]
        rows = []
        rng = self.rng
        for (inst_code, batch_code), (total, start) in totals.items():
            percent = 20 if (inst_code, batch_code) == (I_DYTCM, "NVBP10") else PREPAY_DISBURSE_PERCENT
            disbursed = -(-total * percent // 100 // 100) * 100  # rounded up to the fen
            if disbursed <= 0:
                continue
            seq = 0

            def add(day: dt.date, kind: str, amount: int) -> None:
                nonlocal seq
                if day > SNAPSHOT_END or amount <= 0:
                    return
                seq += 1
                # called within this iteration only: the loop variables are the current ones
                rows.append([f"YF-{inst_code}-{batch_code}-{seq:02d}", inst_code, batch_code,  # noqa: B023
                             day.isoformat(), kind, money(amount)])

            add(start + dt.timedelta(days=3 + rng.randrange(8)), "disbursement", disbursed)
            short = (inst_code, batch_code) == (I_GXMCH, "NVBP10")  # planted: recovers 4% a month
            step = (disbursed * 4 // 100 if short else disbursed // 12) // 100 * 100
            recovered = 0
            for k in range(1, 13):
                first, last = cycle_month_bounds(start, k)
                day = min(first + dt.timedelta(days=10 + rng.randrange(10)), last)
                amount = disbursed - recovered if k == 12 and not short else step
                add(day, "recovery", amount)
                recovered += amount
                if k == 2 and (inst_code, batch_code) == (I_GX1, "JXHC2025"):
                    add(min(day + dt.timedelta(days=1), last), "recovery", disbursed)  # planted: ledger error
        self._write_small("prepayments", rows)

    # -- orders ----------------------------------------------------------------------
    def _windows(self, generic: str, month: dt.date) -> list[tuple[int, int, str]]:
        """(first day index, last day index, regime) of a generic's purchases in a month."""
        first, last = month_bounds(month)
        batch = self.generics[generic]["batch"]
        i0, i1 = self.days.index(first), self.days.index(last)
        if not batch:
            return [(i0, i1, "plain")]
        start = BATCH_BY_CODE[batch][4]
        if start <= first:
            return [(i0, i1, "active")]
        if start > last:
            return [(i0, i1, "pre")]
        split = self.days.index(start)
        return [(i0, split - 1, "pre"), (split, i1, "active")]

    def _open_streams(self):
        self._handles = []
        streams = {}
        for name in ("orders", "payments", "offline_filings"):
            handle = open(self._path(name), "w", newline="", encoding="utf-8")
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(list(FILES[name].columns))
            self._handles.append(handle)
            streams[name] = writer
            self.counts[name] = 0
        return streams

    def write_orders(self) -> None:
        streams = self._open_streams()
        self._orders, self._payments, self._filings = streams["orders"], streams["payments"], streams["offline_filings"]
        try:
            for month in _month_starts():
                for branch_code, members in self.branches:
                    branch_platform_drug = 0
                    for inst in members:
                        platform = self._institution_month(inst, month)
                        if inst.ownership == "public":
                            branch_platform_drug += platform["drug"]
                            if branch_code == ASSESSMENT_BRANCH and month.year == REPORT_YEAR:
                                self.assessment_hvc_platform += platform["high_value_consumable"]
                    if branch_code == "360723" and month == dt.date(2025, 9, 1) and I_DY1 in self.institutions:
                        # planted: one large offline purchase pulls the branch below 90%
                        self._offline_of_amount(self.institutions[I_DY1], month, ALBUMIN,
                                                branch_platform_drug * 25 // 100)
            self._planted_orders()
        finally:
            for handle in self._handles:
                handle.close()

    def _institution_month(self, inst: Institution, month: dt.date) -> dict[str, int]:
        platform = {"drug": 0, "high_value_consumable": 0, "consumable": 0}
        rng = self.rng
        for generic, (demand, selected, share) in inst.usage.items():
            info = self.generics[generic]
            roles = info["roles"]
            for i0, i1, regime in self._windows(generic, month):
                days_in_month = month_bounds(month)[1].day
                quantity = demand * (i1 - i0 + 1) / days_in_month * (0.85 + 0.3 * rng.random())
                plan = self._purchase_plan(inst, generic, month, regime, quantity, selected, share, roles)
                for product, price, qty in plan:
                    if qty >= 1:
                        platform[info["category"]] += self._emit(inst, product, price, int(qty), i0, i1)
        self._normal_offline(inst, month, platform)
        # planted online-rate cases (amounts follow the month's platform amount)
        if month == dt.date(2025, 7, 1) and inst.code == I_RJTCM:
            self._offline_of_amount(inst, month, ALBUMIN, platform["drug"] * 35 // 100)
        if month == dt.date(2025, 10, 1) and inst.code == I_GZ1:
            self._offline_of_amount(inst, month, STAPLER, platform["high_value_consumable"] * 30 // 100)
        return platform

    def _purchase_plan(self, inst, generic, month, regime, quantity, selected, share, roles):
        """[(product, unit price, quantity)] of one generic in one window, planted cases included."""
        if regime == "plain":
            products = roles["X"]
            if len(products) == 1:
                return [(products[0], products[0].price, round(quantity))]
            first = round(quantity * 0.6)
            return [(products[0], products[0].price, first), (products[1], products[1].price, round(quantity) - first)]
        low = roles.get("L", [None])[0]
        if regime == "pre":
            old_price = round(selected.price * PRE_BATCH_PRICE_FACTOR / 100) * 100
            if low is None:
                return [(selected, old_price, round(quantity))]
            return [(selected, old_price, round(quantity * 0.7)), (low, low.price, round(quantity * 0.3))]
        key = (inst.code, generic)
        factor = _PACE.get(key, {}).get(month.month if month.year == 2025 else 0, 1.0)
        if key == (I_RJ1, "瑞舒伐他汀") and month.year == 2025:
            return []  # exact lines are written by _planted_orders (examples.md 2)
        if key == (I_RENAI, "左氧氟沙星") and month == dt.date(2025, 8, 1):
            high = roles["H"][0]
            return [(high, high.price, round(quantity))]  # planted: only the high-priced non-selected
        selected_qty = round(quantity * share * factor)
        plan = [(selected, selected.price, selected_qty)]
        if low is not None and share < 1.0:
            plan.append((low, low.price, round(quantity * (1 - share) * factor)))
        extra = _EXTRA.get((inst.code, generic, month))
        if extra:
            role, fraction = extra
            product = roles[role][0]
            plan.append((product, product.price, max(1, round(selected_qty * fraction))))
        return plan

    def _emit(self, inst: Institution, product: ProductDef, price: int, quantity: int, i0: int, i1: int) -> int:
        """Write ``quantity`` split over a few platform order lines (+ payments); return their amount.

        The hot loop of the generator: everything is local and pre-formatted (see _write_order
        for the same row written the readable way).
        """
        r = self.rng.random
        days = self.days
        text, compact, end_next_month = days.text, days.compact, days.end_next_month
        clock, seq, snapshot = self.clock, self.order_seq, self.snapshot
        write_order, write_payment = self._orders.writerow, self._payments.writerow
        lines = max(1, round(LINES_PER_PRODUCT_MONTH[inst.grade] * self.order_scale))
        lines = min(lines, quantity)
        base, extra = divmod(quantity, lines)
        candidates = [i for i in range(i0, i1 + 1) if days.working[i]] or list(range(i0, i1 + 1))
        ncand = len(candidates)
        public = inst.ownership == "public"
        dists = inst.distributors
        ndists = len(dists)
        inst_code, product_code, price_text = inst.code, product.code, money(price)
        total = orders = payments = 0
        for n in range(lines):
            qty = base + 1 if n < extra else base
            day = candidates[int(r() * ncand)]
            second = 28800 + int(r() * 36000)  # 08:00–18:00
            delay = 1800 + int(r() * 102600) if r() < 0.98 else 108000 + int(r() * 57600)  # 0.5–29 h, some 30–46 h
            offset, response_second = divmod(second + delay, 86400)
            accepted = day + offset + 1 + int(r() * 3)
            seq[day] += 1
            order_id = f"O{compact[day]}{seq[day]:06d}"
            amount = qty * price
            amount_text = money(amount)
            day_text = text[day]
            write_order((order_id, inst_code, product_code, dists[int(r() * ndists)], "platform",
                         f"{day_text} {clock[second]}", str(qty), price_text, amount_text,
                         f"{text[day + offset]} {clock[response_second]}", text[accepted], "false"))
            total += amount
            orders += 1
            # paid on time: public by the end of the month after acceptance, others within 30 days
            deadline = end_next_month[accepted] if public else accepted + 30
            upper = deadline if deadline < snapshot else snapshot
            lower = accepted + 3 if accepted + 3 < upper else upper
            pay_day = lower + int(r() * (upper - lower + 1))
            payment_id = f"FK{order_id[1:]}"
            if r() < 0.03 and pay_day > lower:  # two instalments, both on time
                first = amount // 200 * 100
                write_payment((payment_id + "01", order_id, text[lower], money(first)))
                write_payment((payment_id + "02", order_id, text[pay_day], money(amount - first)))
                payments += 2
            else:
                write_payment((payment_id + "01", order_id, text[pay_day], amount_text))
                payments += 1
            if r() < 0.01:  # an extra line the hospital cancelled (counts nowhere)
                seq[day] += 1
                write_order((f"O{compact[day]}{seq[day]:06d}", inst_code, product_code, dists[0], "platform",
                             f"{day_text} {clock[second + 600]}", str(qty), price_text, amount_text, "", "",
                             "true"))
                orders += 1
        if days.dates[i0].year == 2024:
            key = (inst_code, product.generic)
            self.history[key] = self.history.get(key, 0) + quantity
        self.counts["orders"] += orders
        self.counts["payments"] += payments
        return total

    def _new_order_id(self, day: int) -> str:
        self.order_seq[day] += 1
        return f"O{self.days.compact[day]}{self.order_seq[day]:06d}"

    def _clock(self, second: int) -> str:
        return self.clock[second]

    def _write_order(self, inst, product, distributor, channel, day, second, qty, price, response_second,
                     public, cancelled, order_id=None, acceptance=None, pay=True):
        """One order line (+ its payment or filing). ``response_second`` counts from the order day."""
        days = self.days
        order_id = order_id or self._new_order_id(day)
        amount = qty * price
        response = ""
        accepted = None
        if response_second is not None:
            offset, sec = divmod(response_second, 86400)
            response = f"{days.text[day + offset]} {self._clock(sec)}"
            accepted = acceptance if acceptance is not None else day + offset + 1 + int(self.rng.random() * 3)
        elif channel == "offline" and not cancelled:
            accepted = acceptance if acceptance is not None else day + 1 + int(self.rng.random() * 3)
        if cancelled:
            accepted = None
        self._orders.writerow([
            order_id, inst.code, product.code if product else UNKNOWN_PRODUCT, distributor, channel,
            f"{days.text[day]} {self._clock(second)}", str(qty), money(price), money(amount), response,
            days.text[accepted] if accepted is not None else "", "true" if cancelled else "false"])
        self.counts["orders"] += 1
        if not cancelled and days.dates[day].year == 2024 and product is not None:
            key = (inst.code, product.generic)
            self.history[key] = self.history.get(key, 0) + qty
        if channel == "platform" and accepted is not None and pay:
            self._pay(order_id, amount, accepted, public)
        return order_id

    def _pay(self, order_id: str, amount: int, accepted: int, public: bool) -> None:
        r = self.rng.random
        deadline = self.days.end_next_month[accepted] if public else accepted + 30
        upper = min(deadline, self.snapshot)
        lower = min(accepted + 3, upper)
        day = lower + int(r() * (upper - lower + 1))
        if r() < 0.03 and day > lower:  # paid in two instalments, both on time
            first = amount // 2 // 100 * 100
            self._payments.writerow([f"FK{order_id[1:]}01", order_id, self.days.text[lower], money(first)])
            self._payments.writerow([f"FK{order_id[1:]}02", order_id, self.days.text[day], money(amount - first)])
            self.counts["payments"] += 2
        else:
            self._payments.writerow([f"FK{order_id[1:]}01", order_id, self.days.text[day], money(amount)])
            self.counts["payments"] += 1

    def _file(self, order_id: str, day: int) -> None:
        self._filings.writerow([order_id, self.days.text[day]])
        self.counts["offline_filings"] += 1

    def _offline(self, inst: Institution, product: ProductDef, day: int, qty: int, filed_after: int | None,
                 order_id: str | None = None, second: int | None = None) -> str:
        """An off-platform line; filed on the ``filed_after``-th working day after it (None: never)."""
        second = second if second is not None else 9 * 3600 + int(self.rng.random() * 8 * 3600)
        order_id = self._write_order(inst, product, inst.distributors[0], "offline", day, second, qty,
                                     product.price, None, inst.ownership == "public", cancelled=False,
                                     order_id=order_id)
        if filed_after is not None:
            self._file(order_id, self.days.nth_working_after(day, filed_after))
        return order_id

    def _random_working_day(self, month: dt.date) -> int:
        first, last = month_bounds(month)
        i0, i1 = self.days.index(first), self.days.index(last)
        candidates = [i for i in range(i0, i1 + 1) if self.days.working[i]]
        return candidates[int(self.rng.random() * len(candidates))]

    def _normal_offline(self, inst: Institution, month: dt.date, platform: dict[str, int]) -> None:
        """Now and then a hospital buys albumin off the platform (small, filed on time)."""
        if inst.grade == "一级" or inst.ownership == "military" or ALBUMIN not in inst.usage:
            return
        if self.rng.random() >= 0.2:
            return
        product = self.generics[ALBUMIN]["roles"]["X"][0]
        qty = max(1, platform["drug"] * 15 // 1000 // product.price)
        self._offline(inst, product, self._random_working_day(month), qty, 1 + int(self.rng.random() * 6))

    def _offline_of_amount(self, inst: Institution, month: dt.date, generic: str, amount: int) -> None:
        product = self.generics[generic]["roles"]["X"][0]
        qty = max(1, -(-amount // product.price))
        self._offline(inst, product, self._random_working_day(month), qty, 1 + int(self.rng.random() * 5))

    # -- planted one-off orders -------------------------------------------------------
    def _planted_orders(self) -> None:
        days, inst_of = self.days, self.institutions.get
        ceftriaxone = self.generics[CEFTRIAXONE]["roles"]["X"][0]
        albumin = self.generics[ALBUMIN]["roles"]["X"][0]
        idx = lambda text: days.index(_d(text))  # noqa: E731
        hms = lambda text: sum(int(p) * f for p, f in zip(text.split(":"), (3600, 60, 1)))  # noqa: E731

        def platform(inst_code, order_id, day, clock, qty, response_after=None, acceptance=None, pay=True):
            inst = inst_of(inst_code)
            if inst is None:
                return None
            second = hms(clock)
            response = None if response_after is None else second + response_after
            return self._write_order(inst, ceftriaxone, inst.distributors[0], "platform", idx(day), second, qty,
                                     ceftriaxone.price, response, inst.ownership == "public", cancelled=False,
                                     order_id=order_id, acceptance=acceptance, pay=pay)

        # examples.md 5: no response at all across Spring Festival (never delivered)
        platform(I_NK1, O_SPRING, "2025-01-26", "10:00:00", 20, pay=False)
        # responded 54.5 h after the order: overdue, but before the escalation day
        platform(I_RJMCH, O_LATE_RESPONSE, "2025-06-09", "09:30:00", 30, response_after=2 * 86400 + 6 * 3600 + 1800)
        # no response until after the escalation day (2025-11-22)
        platform(I_GXTCM, O_ESCALATED, "2025-11-18", "14:00:00", 40,
                 response_after=5 * 86400 - 4 * 3600)  # 2025-11-23 10:00
        # examples.md 4: payments (written by hand below)
        for inst_code, order_id, qty in ((I_ZGQ, O_PAY_PUBLIC, 200), (I_BOAI, O_PAY_PRIVATE, 120),
                                          (I_KH, O_PAY_PRIVATE_ON_TIME, 60)):
            platform(inst_code, order_id, "2025-01-17", "10:20:00", qty, response_after=4 * 3600,
                     acceptance=idx("2025-01-20"), pay=False)
        amount = 200 * ceftriaxone.price
        if I_ZGQ in self.institutions:
            self._payments.writerow([f"FK{O_PAY_PUBLIC[1:]}01", O_PAY_PUBLIC, "2025-02-20", money(amount * 6 // 10)])
            self._payments.writerow([f"FK{O_PAY_PUBLIC[1:]}02", O_PAY_PUBLIC, "2025-03-10",
                                     money(amount - amount * 6 // 10)])
            self.counts["payments"] += 2
        for inst_code, order_id, qty, day in ((I_BOAI, O_PAY_PRIVATE, 120, "2025-02-21"),
                                              (I_KH, O_PAY_PRIVATE_ON_TIME, 60, "2025-02-19")):
            if inst_code in self.institutions:
                self._payments.writerow([f"FK{order_id[1:]}01", order_id, day, money(qty * ceftriaxone.price)])
                self.counts["payments"] += 1
        # examples.md 3: Labour Day filing deadline 2025-05-14
        for inst_code, order_id, filed in ((I_RJMCH, O_FILED_LATE, "2025-05-15"),
                                           (I_XFMCH, O_FILED_ON_DEADLINE, "2025-05-14")):
            inst = inst_of(inst_code)
            if inst:
                self._offline(inst, albumin, idx("2025-04-30"), 1, None, order_id=order_id, second=hms("15:00:00"))
                self._file(order_id, idx(filed))
        if inst_of(I_GX1):
            self._offline(inst_of(I_GX1), albumin, idx("2025-08-20"), 2, None, order_id=O_NOT_FILED)
        # examples.md 2: exact selected purchases of rosuvastatin at 瑞金市人民医院
        rj1 = inst_of(I_RJ1)
        if rj1:
            product = rj1.usage["瑞舒伐他汀"][1]
            for day, qty in _RJ1_ROSUVASTATIN:
                self._write_order(rj1, product, rj1.distributors[0], "platform", idx(day), hms("09:00:00"), qty,
                                  product.price, hms("09:00:00") + 5 * 3600, True, cancelled=False)
        # seed 002 §二(五): two selected lines above the selected price (paid on time, by hand:
        # no draw from the generator's random stream, so the other files stay as they were)
        zgq = inst_of(I_ZGQ)
        if zgq:
            product = zgq.usage["阿托伐他汀"][1]
            price = product.price * 11 // 10 // 100 * 100
            for day, qty in _ABOVE_SELECTED_PRICE:
                accepted = idx(day) + 2
                order_id = self._write_order(zgq, product, zgq.distributors[0], "platform", idx(day),
                                             hms("10:00:00"), qty, price, hms("10:00:00") + 3 * 3600, True,
                                             cancelled=False, acceptance=accepted, pay=False)
                self._payments.writerow([f"FK{order_id[1:]}01", order_id, days.text[accepted + 20],
                                         money(qty * price)])
                self.counts["payments"] += 1
        # DAG 8: 大余县人民医院 buys staplers off the platform on 2025-12-10 (filed in time) for 40 %
        # of its branch's public high-value-consumable platform amount of the year: the branch's
        # rate over the year falls to ~71 % < 80 % and so does the hospital's (C3 fails). No
        # random draw: the data generated after it stay as they were.
        dy1 = inst_of(I_DY1)
        if dy1 and self.assessment_hvc_platform:
            stapler = self.generics[STAPLER]["roles"]["X"][0]
            day, amount = idx("2025-12-10"), self.assessment_hvc_platform * 40 // 100
            self._write_order(dy1, stapler, dy1.distributors[0], "offline", day, hms("10:30:00"),
                              -(-amount // stapler.price), stapler.price, None, True, cancelled=False,
                              order_id=O_ASSESS_HVC, acceptance=day + 1)
            self._file(O_ASSESS_HVC, self.days.nth_working_after(day, 2))
        # rows that break the contract (quarantined at ingest; nothing refers to them)
        gz = inst_of("H3607020003")
        if gz:
            for order_id, product, qty in ((O_BAD_QUANTITY, ceftriaxone, -10), (O_BAD_PRODUCT, None, 10)):
                self._write_order(gz, product, gz.distributors[0], "platform", idx("2025-03-12"), hms("11:00:00"),
                                  qty, ceftriaxone.price, hms("13:00:00"), True, cancelled=False,
                                  order_id=order_id, pay=False)

    # -- volume reports -----------------------------------------------------------------
    def write_volume_reports(self) -> None:
        rows = []
        rng = self.rng
        for batch_code, _name, _level, _category, _start, _months, deadline in BATCHES:
            if deadline is None:
                continue
            generic_names = [g[0] for g in GENERICS if g[2] == batch_code]
            for _code, members in self.branches:
                for inst in members:
                    for position, generic in enumerate(generic_names, 1):
                        if generic not in inst.usage:
                            continue
                        key = (inst.code, generic)
                        history = self.history.get(key, 0) if deadline.year == 2025 else 0
                        demand = inst.usage[generic][0]
                        reported = max(round(12 * demand * (0.95 + 0.15 * rng.random())), math.ceil(history * 1.1))
                        explanation = ""
                        report_id = f"BL-{batch_code}-{inst.code}-{position:02d}"
                        report_day = deadline - dt.timedelta(days=1 + rng.randrange(15))
                        planted = _VOLUME_PLANTS.get((inst.code, batch_code, generic))
                        if planted == "missing":
                            continue
                        if planted == "below_80_silent":
                            reported = history // 2
                        elif planted == "below_80_explained":
                            reported = history * 6 // 10
                            explanation = "2025年起部分慢病患者转至上级医院随访，预计用量下降"
                        elif planted == "below_history":
                            reported = math.ceil(history * 0.8)
                        elif planted == "corrected":
                            rows.append([report_id + "-1", inst.code, batch_code, generic, history * 3 // 10, None,
                                         (deadline - dt.timedelta(days=9)).isoformat()])
                            report_id, report_day = report_id + "-2", deadline - dt.timedelta(days=4)
                        rows.append([report_id, inst.code, batch_code, generic, reported, explanation or None,
                                     report_day.isoformat()])
        header = list(FILES["volume_reports"].columns)
        _write_xlsx(self._path("volume_reports", ".xlsx"), "volume_reports", header, rows)
        self.counts["volume_reports"] = len(rows)

    # -- annual reports --------------------------------------------------------------------
    def write_annual_reports(self) -> None:
        folder = self.landing / "annual_reports"
        folder.mkdir(parents=True, exist_ok=True)
        branch_names = {code: (name, county) for code, name, county, _b, _s in BRANCHES}
        rows = []
        for code, (fmt, submitted, missing_heading, numbered) in _ANNUAL_PLAN.items():
            name, county = branch_names[code]
            file_name = f"{code}_{REPORT_YEAR}年度集采监管工作报告.{fmt}"
            sections = _report_sections(name, county, skip=missing_heading)
            if fmt == "docx":
                _write_docx(folder / file_name, name, sections, numbered)
            else:
                (folder / file_name).write_bytes(_report_text(name, sections, markdown=fmt == "md").encode("utf-8"))
            rows.append([code, str(REPORT_YEAR), submitted, file_name])
        self._write_small("annual_reports", rows)

    # -- run ----------------------------------------------------------------------------------
    def run(self) -> dict:
        started = time.perf_counter()
        self.landing.mkdir(parents=True, exist_ok=True)
        clear_landing(self.landing)
        self._build_institutions()
        self.write_reference()
        plan = self.write_agreements()
        self.write_prepayments(plan)
        orders_started = time.perf_counter()
        self.write_orders()
        order_seconds = time.perf_counter() - orders_started
        self.write_volume_reports()
        self.write_annual_reports()
        seconds = time.perf_counter() - started
        return {
            "landing_dir": str(self.landing),
            "rows": dict(sorted(self.counts.items())),
            "institutions": len(self.institutions),
            "order_lines": self.counts["orders"],
            "seconds": round(seconds, 2),
            "order_lines_per_second": round(self.counts["orders"] / order_seconds) if order_seconds else None,
        }


# planted selected-purchase pace of an agreement (month of 2025 → factor of normal)
_PACE: dict[tuple[str, str], dict[int, float]] = {
    (I_GXTCM, "阿托伐他汀"): {1: 0.3, 2: 0.3, 3: 0.3, 4: 1.6, 5: 1.6, 6: 1.6},
    (I_MIL, "二甲双胍"): dict.fromkeys(range(1, 13), 0.35),
    (I_NKTCM, "缬沙坦"): {4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0, 8: 2.0, 9: 2.0, 10: 2.0, 11: 2.0, 12: 2.0},
}
# planted extra lines in one month: (institution, generic, month) → (role, fraction of selected quantity)
_EXTRA: dict[tuple[str, str, dt.date], tuple[str, float]] = {
    (I_XFTCM, "奥美拉唑", dt.date(2025, 5, 1)): ("L", 1.2),
    (I_NK1, "氨氯地平", dt.date(2025, 3, 1)): ("H", 0.05),
    (I_XF1, "氨氯地平", dt.date(2025, 5, 1)): ("N", 0.08),
}
# 失信企业: the sanction of 江西赣江制药 starts then (blank end: to 2025-05-30 under the default profile)
SANCTION_START = "2023-05-31"
# SELECTED_PRICE_EXCEEDED: 章贡区人民医院's selected 阿托伐他汀 at 10 % above the selected price
_ABOVE_SELECTED_PRICE = (("2025-10-15", 200), ("2025-10-22", 100))
# examples.md 2: 12,000 selected boxes between 2025-04-10 and 2025-08-31, then catching up
_RJ1_ROSUVASTATIN = (
    ("2025-04-15", 900), ("2025-04-25", 850), ("2025-05-08", 1250), ("2025-05-22", 1250),
    ("2025-06-05", 1250), ("2025-06-19", 1250), ("2025-07-15", 1400), ("2025-07-25", 1350),
    ("2025-08-07", 1250), ("2025-08-21", 1250),
    ("2025-09-05", 4000), ("2025-09-19", 4000), ("2025-10-14", 4000), ("2025-10-24", 4000),
    ("2025-11-06", 4000), ("2025-11-20", 4000), ("2025-12-04", 4000), ("2025-12-18", 4000),
)
_VOLUME_PLANTS = {
    (I_ZGQ, "ALLI2025", "头孢呋辛"): "below_80_silent",
    (I_XFMCH, "ALLI2025", "缬沙坦"): "below_80_explained",
    (I_DYMCH, "ALLI2025", "头孢呋辛"): "below_history",
    (I_JK, "ALLI2025", "瑞舒伐他汀"): "missing",
    (I_KH, "JXYP2025", "蒙脱石"): "missing",
    (I_GZTCM, "ALLI2025", "缬沙坦"): "corrected",
}
# branch → (format, submitted_at, heading left out, numbered headings); 360781 never submits
_ANNUAL_PLAN = {
    "360702": ("docx", "2026-01-04 09:30:00", None, False),   # complete, on time; Word-style headings
    "360703": ("md", "2026-01-09 16:20:00", "存在的问题", True),  # incomplete
    "360704": ("txt", "2026-01-19 10:05:00", None, True),     # late
    "360722": ("docx", "2025-12-30 17:45:00", None, True),    # early (judged by the first run)
    "360723": ("md", "2026-01-13 11:00:00", None, True),      # on time
}


# ------------------------------------------------------------------ documents
def _report_sections(branch_name: str, county: str, skip: str | None) -> list[tuple[str, list[str]]]:
    body = {
        "总体进展": [
            f"{REPORT_YEAR}年，{branch_name}按照《赣州市医疗保障局关于加强集中带量采购监管工作的通知》要求，"
            f"对{county}辖区公立医疗机构中选产品进院、约定采购量完成和货款结算情况开展按月监测。",
            "全年组织进院排查4次，对约定采购量完成进度滞后的机构开展约谈提醒。"],
        "具体工作落实情况": [
            "1.落实报量审核：对报量低于上年度实际采购量80%的机构逐一要求作出说明。",
            "2.落实网采监测：按月通报药品和高值医用耗材网采率，督促线下议价采购在7个工作日内备案。",
            "3.落实配送督导：对48小时未响应订单及时督促配送企业。"],
        "存在的问题": [
            "1.个别基层医疗机构线下采购备案不及时。",
            "2.部分机构中选产品使用比例波动较大。"],
        "下一步打算": [
            "1.继续开展一院一档监测，加大对滞后机构的督导力度。",
            "2.配合市局做好医保基金预付和结余留用考核。"],
    }
    return [(heading, paragraphs) for heading, paragraphs in body.items() if heading != skip]


def _report_text(branch_name: str, sections, markdown: bool) -> str:
    lines = [("# " if markdown else "") + "加强集采监管工作落实情况报告", "", f"报送单位：{branch_name}", ""]
    for heading, paragraphs in sections:
        number = HEADING_NUMBERS[REPORT_HEADINGS.index(heading)]
        lines += [("## " if markdown else "") + number + heading, ""]
        for paragraph in paragraphs:
            lines += [paragraph, ""]
    lines += [f"{branch_name}（盖章）", f"{REPORT_YEAR + 1}年1月"]
    return "\n".join(lines) + "\n"


def _write_docx(path: Path, branch_name: str, sections, numbered: bool) -> None:
    from docx import Document

    document = Document()
    document.add_heading("加强集采监管工作落实情况报告", 0)
    document.add_paragraph(f"报送单位：{branch_name}")
    for heading, paragraphs in sections:
        number = HEADING_NUMBERS[REPORT_HEADINGS.index(heading)] if numbered else ""
        document.add_heading(number + heading, 1)  # without a number: as if Word numbered it
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.add_paragraph(f"{branch_name}（盖章）")
    props = document.core_properties
    props.author = branch_name
    props.title = f"{REPORT_YEAR}年度加强集采监管工作落实情况报告"
    props.created = props.modified = props.last_printed = FIXED_DOC_TIME
    props.revision = 1
    props.comments = ""
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(_fixed_zip(buffer.getvalue()))


def _write_xlsx(path: Path, title: str, header: list[str], rows: list[list]) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    workbook.properties.creator = "省医药集中采购平台"
    workbook.properties.created = FIXED_DOC_TIME
    sheet = workbook.create_sheet(title)
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.write_bytes(_fixed_zip(buffer.getvalue()))


_STAMP = FIXED_DOC_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fixed_zip(data: bytes) -> bytes:
    """Rewrite an OOXML package with fixed entry timestamps and core-property dates."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                                 lambda m: m.group(1) + _STAMP.encode() + m.group(3), content)
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED_DOC_TIME.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            target.writestr(entry, content)
    return out.getvalue()


# ------------------------------------------------------------------ public API
def clear_landing(landing_dir: Path) -> list[Path]:
    """Remove the contract's files (NAME.csv / NAME.xlsx, annual_reports/) from a landing folder."""
    landing = Path(landing_dir)
    removed = []
    for name in FILES:
        for suffix in (".csv", ".xlsx"):
            path = landing / f"{name}{suffix}"
            if path.is_file():
                path.unlink()
                removed.append(path)
    reports = landing / "annual_reports"
    if reports.is_dir():
        shutil.rmtree(reports)
        removed.append(reports)
    return removed


def generate(landing_dir, seed: int = 20250101, scale: float = 1.0, order_scale: float | None = None) -> dict:
    """Write the demo landing folder; return a summary (rows per file, timing).

    ``scale`` multiplies the institutions (120 at scale 1) and, unless ``order_scale`` is
    given, the order lines per institution and month as well.
    """
    if scale <= 0:
        raise ValueError("scale must be > 0")
    return _Generator(Path(landing_dir), seed, scale, order_scale).run()


def planted_rule_codes() -> set[str]:
    return {case["rule_code"] for case in PLANTED}
