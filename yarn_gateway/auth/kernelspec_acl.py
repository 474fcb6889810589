"""Kernelspec access lists: which users and groups may see and start a kernelspec.

Configured as ``AccessPolicy.kernelspec_acls``: ``{spec name or "*": rule}`` where a rule is
``{"allow_users": [...], "allow_groups": [...], "deny_users": [...], "deny_groups": [...]}``.
The rule of a spec applies if present, else the ``"*"`` rule, else everything is allowed.
Deny lists win. When a rule has any allow list, the user must be in one of them.
Every refusal names the rule that decided it, so a user (and the administrator reading
the log) knows what to change.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Iterable, Mapping
from typing import Any, Optional

KEYS = ("allow_users", "allow_groups", "deny_users", "deny_groups")


def validate_acls(acls: Mapping[str, Any]) -> dict[str, dict[str, frozenset[str]]]:
    """Normalize ``kernelspec_acls`` (raises ValueError on unknown keys or bad values)."""
    out: dict[str, dict[str, frozenset[str]]] = {}
    for spec, rule in acls.items():
        if not isinstance(rule, Mapping):
            raise ValueError(f"kernelspec_acls[{spec!r}] must be a dict with keys {', '.join(KEYS)}")
        unknown = set(rule) - set(KEYS)
        if unknown:
            raise ValueError(f"kernelspec_acls[{spec!r}]: unknown key(s) {sorted(unknown)}; use {', '.join(KEYS)}")
        norm: dict[str, frozenset[str]] = {}
        for key in KEYS:
            value = rule.get(key, [])
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ValueError(f"kernelspec_acls[{spec!r}][{key!r}] must be a list of names")
            norm[key] = frozenset(str(v) for v in value)
        out[str(spec)] = norm
    return out


def denial(acls: Mapping[str, Mapping[str, frozenset[str]]], spec: str, user: str,
           groups: frozenset[str]) -> Optional[str]:
    """None if ``user`` (member of ``groups``) may use ``spec``; else the deciding rule, in words."""
    key = spec if spec in acls else "*" if "*" in acls else None
    if key is None:
        return None
    rule = acls[key]
    where = f"AccessPolicy.kernelspec_acls[{key!r}]"
    if user in rule["deny_users"]:
        return f"{where}.deny_users lists '{user}'"
    hit = sorted(groups & rule["deny_groups"])
    if hit:
        return f"{where}.deny_groups lists group '{hit[0]}' of '{user}'"
    if not rule["allow_users"] and not rule["allow_groups"]:
        return None
    if user in rule["allow_users"] or groups & rule["allow_groups"]:
        return None
    return f"'{user}' is in neither {where}.allow_users nor {where}.allow_groups"


def os_groups(user: str) -> frozenset[str]:
    """The user's groups from the OS (NSS: files, LDAP, SSSD); empty for unknown users. Blocking."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return frozenset()
    names = set()
    try:
        names.add(grp.getgrgid(pw.pw_gid).gr_name)
    except KeyError:
        pass
    try:
        import os

        for gid in os.getgrouplist(user, pw.pw_gid):
            try:
                names.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                continue
    except OSError:
        pass
    return frozenset(names)
