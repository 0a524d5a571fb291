"""The installer's language for a command: the catalogue ``main`` chose from ``--lang``/locale."""

from __future__ import annotations

import argparse

from shaobing.core.i18n import Catalogue, catalogue


def translator(args: argparse.Namespace) -> Catalogue:
    # Called without main (a test building its own Namespace): the msgids, English.
    return catalogue(getattr(args, "lang", None) or "en")
