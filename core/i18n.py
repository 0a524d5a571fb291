"""The installer's language: one zh-CN/en catalogue for the console and the command line.

Messages are written in English in the code (``_("Wrong PIN")``) and translated
in ``core/locale/<lang>/LC_MESSAGES/shaobing.po``, the standard gettext layout,
so translators use ordinary tools (``pybabel extract/update``, Poedit). The .po
files are read with Babel at first use; no compile step, nothing binary in git.
Chinese is the default: installers at village posts read Chinese first.
"""

from __future__ import annotations

import functools
from pathlib import Path

from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"zh-CN": "zh_CN", "en": "en"}
DEFAULT = "zh-CN"


class Catalogue:
    def __init__(self, lang: str, messages: dict[str, str]):
        self.lang = lang
        self._messages = messages

    def gettext(self, message: str) -> str:
        return self._messages.get(message) or message

    __call__ = gettext

    def messages(self) -> dict[str, str]:
        return dict(self._messages)


def pick(lang: str | None) -> str:
    """A supported language for what a browser or a flag asked for (``zh``, ``en-US`` ...)."""
    if not lang:
        return DEFAULT
    for wanted in lang.replace("_", "-").split(","):
        tag = wanted.split(";")[0].strip().lower()
        for known in LANGUAGES:
            if tag == known.lower() or tag.split("-")[0] == known.lower().split("-")[0]:
                return known
    return DEFAULT


@functools.cache
def catalogue(lang: str = DEFAULT) -> Catalogue:
    """Read once per language; the catalogue is immutable afterwards."""
    lang = pick(lang)
    path = LOCALE_DIR / LANGUAGES[lang] / "LC_MESSAGES" / "shaobing.po"
    with path.open("rb") as fh:
        po = read_po(fh)
    messages = {
        str(m.id): str(m.string)
        for m in po
        if m.id and isinstance(m.id, str) and m.string and not m.fuzzy
    }
    return Catalogue(lang, messages)
