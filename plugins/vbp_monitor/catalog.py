"""The rule codes of domain.md: who owns them, their Chinese titles and source clauses.

Rule codes are a contract (other tools and acceptance tests read them): never rename.
"""
from __future__ import annotations

from dataclasses import dataclass

SEVERITY_ORDER = {"critical": 0, "high": 1, "warning": 2, "info": 3}
SEVERITY_ZH = {"critical": "严重", "high": "高", "warning": "关注", "info": "提醒"}


@dataclass(frozen=True)
class Rule:
    code: str
    dag_id: str
    title: str  # 中文名称
    clause: str  # 依据


RULES = {r.code: r for r in [
    Rule("DATA_QUALITY", "*", "数据质量问题", "数据契约 data-contract.md"),
    Rule("ENTRY_NOT_PURCHASED", "vbp_entry_sweep", "中选产品未进院采购", "赣市医保字〔2023〕28号 二(二)"),
    Rule("ENTRY_BEHIND_AGREEMENT", "vbp_entry_sweep", "未按协议量采购", "赣市医保字〔2023〕28号 二(二)"),
    Rule("PROGRESS_BEHIND", "vbp_monthly_monitoring", "约定采购量完成进度滞后", "赣市医保字〔2023〕28号 二(三)"),
    Rule("SELECTED_SHARE_LOW", "vbp_monthly_monitoring", "中选产品采购数量占比低于约定比例", "赣市医保字〔2023〕28号 二(二)(三)、附件1"),
    Rule("NON_SELECTED_HIGH_PRICE", "vbp_monthly_monitoring", "采购高价非中选产品", "赣市医保字〔2023〕28号 二(三)"),
    Rule("ONLY_NON_SELECTED", "vbp_monthly_monitoring", "不报量不采购中选产品而只采购高价非中选产品", "赣市医保字〔2023〕28号 二(三)"),
    Rule("ONLINE_RATE_LOW", "vbp_monthly_monitoring", "网采率不达标", "赣市医保字〔2023〕28号 二(四)、附件1"),
    Rule("BRANCH_ONLINE_RATE_LOW", "vbp_monthly_monitoring", "分局辖区网采率不达标", "赣市医保字〔2023〕28号 附件1"),
    Rule("OFFLINE_NOT_FILED", "vbp_monthly_monitoring", "线下议价采购未备案", "赣市医保字〔2023〕28号 二(四)"),
    Rule("OFFLINE_FILED_LATE", "vbp_monthly_monitoring", "线下议价采购逾期备案", "赣市医保字〔2023〕28号 二(四)"),
    Rule("NON_EVALUATED_PURCHASE", "vbp_monthly_monitoring", "采购未通过一致性评价药品", "宁政办规发〔2019〕11号 五(一)4；韶医保〔2019〕96号"),
    Rule("PAYMENT_OVERDUE", "vbp_monthly_monitoring", "货款逾期未结清", "责任清单第11项；陕西耗材带量采购方案 五(五)；宁政办规发〔2019〕11号 五(三)9"),
    Rule("PREPAY_UNDER_DISBURSED", "vbp_prepayment_reconciliation", "医保基金预付款拨付不足", "责任清单第12项；宁政办规发〔2019〕11号 五(三)8"),
    Rule("PREPAY_RECOVERY_SHORT", "vbp_prepayment_reconciliation", "预付款归还（冲抵）不足", "宁政办规发〔2019〕11号 五(三)8"),
    Rule("PREPAY_OVER_RECOVERED", "vbp_prepayment_reconciliation", "预付款归还超过已拨付（台账差错）", "宁政办规发〔2019〕11号 五(三)8"),
    Rule("ANNUAL_REPORT_DUE", "vbp_annual_report_collection", "年度集采监管工作报告待报送", "赣市医保字〔2023〕28号 三(二)"),
    Rule("ANNUAL_REPORT_MISSING", "vbp_annual_report_collection", "年度集采监管工作报告逾期未报", "赣市医保字〔2023〕28号 三(二)"),
    Rule("ANNUAL_REPORT_LATE", "vbp_annual_report_collection", "年度集采监管工作报告逾期报送", "赣市医保字〔2023〕28号 三(二)"),
    Rule("ANNUAL_REPORT_INCOMPLETE", "vbp_annual_report_collection", "年度集采监管工作报告缺少模板章节", "赣市医保字〔2023〕28号 附件2"),
    Rule("REPORT_BELOW_80_NO_EXPLANATION", "vbp_volume_review", "报量低于历史采购量80%且未作说明", "赣市医保字〔2023〕28号 二(一)"),
    Rule("REPORT_BELOW_80", "vbp_volume_review", "报量低于历史采购量80%（已说明，需审核）", "赣市医保字〔2023〕28号 二(一)"),
    Rule("REPORT_BELOW_HISTORY", "vbp_volume_review", "报量低于上一年度实际采购量", "赣市医保字〔2023〕28号 二(一)"),
    Rule("HISTORY_NOT_REPORTED", "vbp_volume_review", "有历史采购量而未报量", "赣市医保字〔2023〕28号 二(一)"),
    Rule("ORDER_RESPONSE_OVERDUE", "vbp_order_response", "订单超过48小时未响应", "赣市医保字〔2023〕28号 二(六)"),
    Rule("ORDER_RESPONSE_ESCALATED", "vbp_order_response", "督促后仍未响应，上报市局", "赣市医保字〔2023〕28号 二(六)"),
]}

# Alerts the city bureau receives in detail, besides its per-run summary (operations.md).
CITY_ROUTED_CODES = {"PREPAY_UNDER_DISBURSED", "BRANCH_ONLINE_RATE_LOW"}
CITY_ROUTED_PREFIXES = ("ANNUAL_REPORT_",)


def routed_to_city(rule_code: str, severity: str) -> bool:
    return (
        severity == "critical"
        or rule_code in CITY_ROUTED_CODES
        or rule_code.startswith(CITY_ROUTED_PREFIXES)
    )


def rule_title(code: str) -> str:
    rule = RULES.get(code)
    return rule.title if rule else code
