"""Kernelspec access lists: which users and groups may see and start a kernelspec.

Configured as ``AccessPolicy.kernelspec_acls``: ``{spec name or "*": rule}`` where a rule is
``{"allow_users": [...], "allow_groups": [...], "deny_users": [...], "deny_groups": [...]}``.
The rule of a spec applies if present, else the ``"*"`` rule, else everything is allowed.
Deny lists win. When a rule has any allow list, the user must be in one of them.
Every refusal names the rule that decided it, so a user (and the administrator reading
the log) knows what to change.

Names: jupyter_client finds kernelspecs case-insensitively and lists them in lower case
(the directory ``spark_R_yarn_cluster`` is the kernelspec ``spark_r_yarn_cluster``). So a
request's name is first resolved to that canonical name (:func:`canonical_spec`), and
every rule applies to the canonical name; the keys of ``kernelspec_acls`` are compared
in lower case too, so ``Python_Local`` can never slip past a rule for ``python_local``.

Kernelspecs whose provisioner is not the YARN provisioner run their kernels on the
gateway host, as the gateway's own Unix account (:func:`runs_on_gateway_host`): the
policy allows them only to the users and groups an administrator names.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

KEYS = ("allow_users", "allow_groups", "deny_users", "deny_groups")
YARN_PROVISIONER = "yarn-provisioner"
#: Longer names are not kernelspec names (jupyter_client's are directory names).
MAX_NAME = 255


@dataclass(frozen=True)
class Rule:
    """One entry of ``kernelspec_acls``; ``key`` is spelled as configured (for messages)."""

    key: str
    allow_users: frozenset[str]
    allow_groups: frozenset[str]
    deny_users: frozenset[str]
    deny_groups: frozenset[str]


def validate_acls(acls: Mapping[str, Any]) -> dict[str, Rule]:
    """Normalize ``kernelspec_acls``, keyed by lower-case spec name (raises ValueError on
    unknown keys, bad values, or two keys naming the same kernelspec)."""
    out: dict[str, Rule] = {}
    for spec, rule in acls.items():
        if not isinstance(rule, Mapping):
            raise ValueError(f"kernelspec_acls[{spec!r}] must be a dict with keys {', '.join(KEYS)}")
        unknown = set(rule) - set(KEYS)
        if unknown:
            raise ValueError(f"kernelspec_acls[{spec!r}]: unknown key(s) {sorted(unknown)}; use {', '.join(KEYS)}")
        lists: dict[str, frozenset[str]] = {}
        for key in KEYS:
            value = rule.get(key, [])
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ValueError(f"kernelspec_acls[{spec!r}][{key!r}] must be a list of names")
            lists[key] = frozenset(str(v) for v in value)
        norm = str(spec).lower()
        if norm in out:
            raise ValueError(f"kernelspec_acls[{spec!r}] and kernelspec_acls[{out[norm].key!r}] name the same "
                             "kernelspec (kernelspec names are not case-sensitive); merge them")
        out[norm] = Rule(str(spec), **lists)
    return out


def denial(acls: Mapping[str, Rule], spec: str, user: str, groups: frozenset[str]) -> Optional[str]:
    """None if ``user`` (member of ``groups``) may use ``spec``; else the deciding rule, in words."""
    spec = spec.lower()
    rule = acls.get(spec) or acls.get("*")
    if rule is None:
        return None
    where = f"AccessPolicy.kernelspec_acls[{rule.key!r}]"
    if user in rule.deny_users:
        return f"{where}.deny_users lists '{user}'"
    hit = sorted(groups & rule.deny_groups)
    if hit:
        return f"{where}.deny_groups lists group '{hit[0]}' of '{user}'"
    if not rule.allow_users and not rule.allow_groups:
        return None
    if user in rule.allow_users or groups & rule.allow_groups:
        return None
    return f"'{user}' is in neither {where}.allow_users nor {where}.allow_groups"


def provisioner_of(spec: KernelSpec | Mapping[str, Any]) -> str:
    """The provisioner a kernelspec names ('' for none: jupyter_client's local provisioner)."""
    metadata = spec.get("metadata") if isinstance(spec, Mapping) else spec.metadata
    prov = (metadata or {}).get("kernel_provisioner") if isinstance(metadata, Mapping) else None
    name = prov.get("provisioner_name") if isinstance(prov, Mapping) else None
    return str(name or "")


def runs_on_gateway_host(spec: KernelSpec | Mapping[str, Any]) -> bool:
    """Whether a kernelspec's kernels may run on the gateway host as the gateway's account:
    every provisioner but the YARN one (the gateway cannot vouch for another's isolation)."""
    return provisioner_of(spec) != YARN_PROVISIONER


def canonical_spec(ksm: KernelSpecManager, name: str) -> Optional[tuple[str, KernelSpec]]:
    """The kernelspec a request's ``name`` designates, as (canonical name, spec); None if
    there is none. Blocking (reads the kernelspec directories)."""
    from jupyter_client.kernelspec import NoSuchKernel

    if not name or len(name) > MAX_NAME:
        return None
    key = name.lower()
    if key not in ksm.find_kernel_specs():
        return None
    try:  # the same lookup the kernel manager makes, so the spec checked is the spec launched
        return key, ksm.get_kernel_spec(key)
    except NoSuchKernel:
        return None


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
