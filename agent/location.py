"""Formats of Chinese administrative and railway locations, validated once here."""

from __future__ import annotations

import re
from datetime import date

# First two digits of a 统计用区划代码 are the province-level code (GB/T 2260).
PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65}
)
TRACK_SIDES = ("上行", "下行", "双线")
_MILEAGE = re.compile(r"^K([0-9]{1,4})\+([0-9]{3})(?:\.([0-9]{1,3}))?$")


def check_village_code(code: str) -> str:
    if not re.fullmatch(r"[0-9]{12}", code):
        raise ValueError(
            f"village code must be exactly 12 digits (统计用区划代码), got {len(code)} "
            f"character(s): {code!r}"
        )
    if int(code[:2]) not in PROVINCE_CODES:
        raise ValueError(f"village code {code!r} starts with {code[:2]}, not a province code")
    return code


def check_code_year(year: int) -> int:
    # The statistics bureau published its first 12-digit codes for 2009.
    if not 2009 <= year <= date.today().year:
        raise ValueError(f"code year {year} is outside 2009..{date.today().year}")
    return year


def mileage_metres(text: str) -> float:
    """``K123+450`` -> 123450.0 metres; raises ValueError naming the expected form."""
    m = _MILEAGE.match(text)
    if not m:
        raise ValueError(f"mileage {text!r} is not of the form K123+450 (km + 3-digit metres)")
    km, metres, frac = m.groups()
    return int(km) * 1000 + int(metres) + (float(f"0.{frac}") if frac else 0.0)


def check_track_side(side: str) -> str:
    aliases = {"up": "上行", "down": "下行", "both": "双线"}
    side = aliases.get(side, side)
    if side not in TRACK_SIDES:
        raise ValueError(f"track side {side!r} must be one of 上行, 下行, 双线 (or up/down/both)")
    return side
