"""Checks of single values, shared by the sections: each raises a one-line :class:`ConfigError`
naming the key (``what``), the value and the stack file (``where``)."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from overlaylab.errors import ConfigError

HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CONTAINER = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
LAB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
IFNAME = re.compile(r"^[a-zA-Z0-9_.-]+$")
USER = re.compile(r"^[a-z_][a-z0-9_-]*$")
IFNAME_MAX = 15  # IFNAMSIZ - 1


def known(
    keys: Any, allowed: tuple[str, ...], prefix: str, where: str, noun: str = "a setting"
) -> None:
    """A misspelt key would otherwise be a silent default: name the first unknown one, and
    the valid key closest to it."""
    unknown = sorted(str(k) for k in keys if k not in allowed)
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    raise ConfigError(
        f"{prefix}{unknown[0]} is not {noun}{hint}: use one of {', '.join(allowed)} ({where})"
    )


def mapping(value: Any, what: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__} ({where})")
    return value


def network(value: Any, what: str, where: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as e:
        raise ConfigError(
            f"{what} {value!r} is not a valid IPv4 CIDR ({e}): write it like 10.0.0.0/24 ({where})"
        ) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ConfigError(f"{what} {value!r} must be IPv4 ({where})")
    return net


def address(value: Any, what: str, where: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        raise ConfigError(
            f"{what} {value!r} is not a valid IPv4 address: write it like 192.168.205.10 ({where})"
        ) from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ConfigError(f"{what} {value!r} must be IPv4 ({where})")
    return addr


def integer(value: Any, what: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {value!r} is not a number ({where})") from None


def port(value: Any, what: str, where: str) -> int:
    number = integer(value, what, where)
    if not 1 <= number <= 65535:
        raise ConfigError(f"{what} {number} is not a TCP port (1-65535) ({where})")
    return number


def unique(values: list[str], what: str, key: str, where: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"duplicate {what} {v!r}: make each {key} unique ({where})")
        seen.add(v)
