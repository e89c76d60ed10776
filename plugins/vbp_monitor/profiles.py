"""Policy profiles: versioned TOML files in include/profiles (thresholds live there, not in code)."""
from __future__ import annotations

import functools
import tomllib
from typing import Any

from vbp_monitor import config


@functools.cache
def load_profile(name: str | None = None) -> dict[str, Any]:
    name = name or config.policy_profile_name()
    path = config.PROFILES_DIR / f"{name}.toml"
    if not path.exists():
        known = sorted(p.stem for p in config.PROFILES_DIR.glob("*.toml"))
        raise ValueError(f"Unknown policy profile {name!r} (VBP_POLICY_PROFILE); known: {known}")
    with path.open("rb") as fh:
        profile = tomllib.load(fh)
    profile.setdefault("name", name)
    return profile
