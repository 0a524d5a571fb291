"""Local gettext shim; point `_` at agent/i18n.py when the installer catalogue lands."""

import gettext

_translations = gettext.NullTranslations()


def _(message: str) -> str:
    return _translations.gettext(message)
