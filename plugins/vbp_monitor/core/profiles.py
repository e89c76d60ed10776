"""Policy profiles: versioned TOML files in include/profiles (thresholds live there, not in code).

A profile may say ``extends = "<other profile>"`` and then holds only what differs: tables
are merged key by key, any other value replaces the inherited one. Numbers with a decimal
point are read as ``Decimal`` (thresholds are compared exactly, never as binary floats).
Citations sit in each section's ``citations`` table, next to the parameters they justify;
``cite`` finds the one a rule applied.
"""
from __future__ import annotations

import functools
import tomllib
from decimal import Decimal
from typing import Any

from vbp_monitor.core import config

MAX_EXTENDS_DEPTH = 8


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(name: str) -> dict[str, Any]:
    path = config.PROFILES_DIR / f"{name}.toml"
    if not path.exists():
        known = sorted(p.stem for p in config.PROFILES_DIR.glob("*.toml"))
        raise ValueError(f"Unknown policy profile {name!r} (VBP_POLICY_PROFILE); known: {known}")
    with path.open("rb") as fh:
        return tomllib.load(fh, parse_float=Decimal)


@functools.cache
def load_profile(name: str | None = None) -> dict[str, Any]:
    """The profile ``name`` (default: ``VBP_POLICY_PROFILE``), with what it extends merged in."""
    name = name or config.policy_profile_name()
    chain = [_read(name)]
    while "extends" in chain[-1]:
        if len(chain) > MAX_EXTENDS_DEPTH:
            raise ValueError(f"policy profile {name!r}: extends nests deeper than {MAX_EXTENDS_DEPTH}")
        chain.append(_read(chain[-1]["extends"]))
    profile: dict[str, Any] = {}
    for layer in reversed(chain):
        profile = _merge(profile, {k: v for k, v in layer.items() if k != "extends"})
    profile["name"] = name
    return profile


def profile_title(profile: dict[str, Any]) -> str:
    """The profile as a reader sees it (its Chinese title, never its file name)."""
    return str(profile.get("title") or profile.get("description") or profile["name"])


def cite(profile: dict[str, Any], rule_code: str, variant: str | None = None) -> str:
    """The clause that sets ``rule_code`` as applied to this case, from the profile.

    The catalog names the key (``<section>.citations.<CODE>``); a citation that depends on
    the case (e.g. the payment deadline by ownership) is a table keyed by ``variant``.
    """
    from vbp_monitor.core.catalog import RULES

    node: Any = profile
    for part in RULES[rule_code].citation.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"policy profile {profile.get('name')!r} has no citation {RULES[rule_code].citation}")
        node = node[part]
    if isinstance(node, dict):
        if variant is None or variant not in node:
            raise KeyError(f"citation {RULES[rule_code].citation} has no variant {variant!r}")
        node = node[variant]
    return str(node)
