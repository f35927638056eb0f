"""The lab's configuration as plain, validated values.

Everything Pulumi-specific stays out of here: the program turns a stack's config into a raw
mapping, :func:`parse` turns that into a :class:`LabConfig` or raises :class:`ConfigError`
with one line saying what is wrong and how to fix it. Nothing is created before this passes.

- :mod:`.model`: :class:`LabConfig`, :class:`Host`, :class:`Container`, :data:`KEYS`.
- :mod:`.sections`: :func:`parse`, one function per config section.
- :mod:`.values`: the checks of single values the sections share.
"""

from overlaylab.config.model import KEYS, Container, Host, LabConfig
from overlaylab.config.sections import parse
from overlaylab.errors import ConfigError

__all__ = ["KEYS", "ConfigError", "Container", "Host", "LabConfig", "parse"]
