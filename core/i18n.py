"""The installer's language: one zh-CN/en catalogue for the console and the command line.

Messages are written in English in the code (``_("Wrong PIN")``) and translated
in ``core/locale/<lang>/LC_MESSAGES/shaobing.po``, the standard gettext layout,
so translators use ordinary tools (``pybabel extract -k N_ ...``, Poedit). A message
kept in a constant is marked ``N_("...")`` and translated where it is shown. The .po
files are read with Babel at first use; no compile step, nothing binary in git.
Chinese is the default: installers at village posts read Chinese first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
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


def N_(message: str) -> str:
    """Marks a message kept in a constant for the catalogue (gettext's ``N_``);
    it is translated where it is shown, with the catalogue of that moment."""
    return message


@functools.cache
def _template(msgid: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", msgid)
    regex = "".join(f"(?P<{p}>.+?)" if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(f"^{regex}$", re.S)


def made_from(text: str, msgids: Iterable[str]) -> tuple[str, dict[str, str]] | None:
    """The msgid ``text`` was made from by ``.format()``, and its values; None if none."""
    for msgid in msgids:
        if match := _template(msgid).match(text):
            return msgid, match.groupdict()
    return None


def reword(text: str, msgids: Iterable[str], _: Callable[[str], str]) -> str:
    """``text``, made in English from one of ``msgids`` by ``.format()``, in ``_``'s language.

    Reasons are kept in English where machines read them (the JSON report, the
    agent's health); a screen shows them reworded. Values that are messages of
    their own are reworded too. Text from no msgid comes back unchanged.
    """
    known = tuple(msgids)
    found = made_from(text, known)
    if found is None:
        return text
    msgid, values = found
    return _(msgid).format(**{k: reword(v, known, _) for k, v in values.items()})


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


# Where the command line looks for the installer's language, first found wins (as gettext).
ENV_LANG = "SHAOBING_LANG"
_LOCALE_VARS = (ENV_LANG, "LC_ALL", "LC_MESSAGES", "LANG")


def from_environment(environ: Mapping[str, str], flag: str | None = None) -> str:
    """The command line's language: ``--lang``, else ``$SHAOBING_LANG``, else the locale.

    A box's SSH session often has ``LANG=C`` or none at all, and its installers
    read Chinese: only a locale that says English (``en_US.UTF-8``) gives English;
    C, POSIX, unset or any other language gives zh-CN.
    """
    if flag:
        return pick(flag)
    for name in _LOCALE_VARS:
        value = environ.get(name, "")
        if value:
            return pick(value.split(".")[0])  # C, POSIX, de_DE ... -> DEFAULT
    return DEFAULT
