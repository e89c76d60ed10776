"""Chinese labels of the contract's coded values, once for every message, email and file."""
from __future__ import annotations

OWNERSHIP_ZH = {"public": "公立", "military": "军队", "private": "民营"}
CATEGORY_ZH = {"drug": "药品", "consumable": "医用耗材", "high_value_consumable": "高值医用耗材"}
# The categories whose online purchase rate is judged (seed 002 附件1), in reading order.
ONLINE_CATEGORIES = ("drug", "high_value_consumable")
CHANNEL_ZH = {"platform": "平台采购", "offline": "线下议价采购"}
BATCH_LEVEL_ZH = {"national": "国家集采", "alliance": "联盟集采", "provincial": "省级集采"}
BRANCH_LEVEL_ZH = {"city": "市医保局", "branch": "分局"}
TXN_TYPE_ZH = {"disbursement": "拨付", "recovery": "归还（冲抵）"}

# Severities, from high to low (domain.md): the order every list and email uses.
SEVERITY_ORDER = {"critical": 0, "high": 1, "warning": 2, "info": 3}
SEVERITY_ZH = {"critical": "严重", "high": "高", "warning": "关注", "info": "提醒"}


def label(mapping: dict[str, str], code: str | None) -> str:
    """The Chinese label of ``code``; an unknown code is shown as it is, never dropped."""
    if code is None:
        return ""
    return mapping.get(code, code)
