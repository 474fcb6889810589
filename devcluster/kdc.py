"""Kerberos for the dev cluster's secure mode: service principals in an MIT KDC.

The KDC itself is a k5test ``K5Realm`` (Debian's krb5-kdc, on a private port, its own
krb5.conf): the test suite owns one realm per session and hands it here. This module adds
what a Kerberized YARN needs — ``rm/localhost``, ``nm/localhost`` and ``HTTP/localhost``
in one keytab (``_HOST`` resolves to ``localhost`` on this single host) — and a
submitting principal (the gateway's) whose Hadoop short name the proxyuser rules name.
"""

from __future__ import annotations

import os
from typing import Any

from .cluster import KerberosSpec

SERVICE_PRINCIPALS = ("rm/localhost", "nm/localhost", "HTTP/localhost")


def service_keytab(realm: Any, keytab: str) -> KerberosSpec:
    """Put the YARN service principals of ``realm`` (a k5test K5Realm) in ``keytab``.

    Principals that exist already (``HTTP/localhost`` may serve the gateway too) keep their
    keys: they are extracted with ``-norandkey``, so keytabs made earlier stay valid.
    """
    out = realm.run_kadminl("listprincs")
    existing = set((out.decode() if isinstance(out, bytes) else str(out)).split())
    for short in SERVICE_PRINCIPALS:
        principal = f"{short}@{realm.realm}"
        if principal not in existing:
            realm.addprinc(principal)
        realm.extract_keytab(principal, keytab)
    os.chmod(keytab, 0o600)
    return KerberosSpec(realm=realm.realm, krb5_conf=realm.env["KRB5_CONFIG"], service_keytab=keytab)
