"""Read Hadoop XML configuration files (core-site.xml, yarn-site.xml) of a HADOOP_CONF_DIR.

The format is Hadoop's ``<configuration><property><name/><value/></property>...``. The
gateway reads it for the ResourceManager web addresses (one, or one per HA id); it never
writes Hadoop configuration.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Optional


def read_conf(path: str) -> dict[str, str]:
    """Return the properties of one Hadoop XML file (empty dict if it does not exist)."""
    if not os.path.exists(path):
        return {}
    root = ET.parse(path).getroot()  # noqa: S314
    props: dict[str, str] = {}
    for prop in root.iter("property"):
        name = prop.findtext("name")
        if name is None:
            continue
        props[name.strip()] = (prop.findtext("value") or "").strip()
    return props


def load_hadoop_conf(conf_dir: Optional[str] = None) -> dict[str, str]:
    """Merge core-site.xml and yarn-site.xml of ``conf_dir`` (later files win).

    ``conf_dir`` defaults to $YARN_CONF_DIR, then $HADOOP_CONF_DIR, then /etc/hadoop/conf,
    read at call time (never at import time).
    """
    conf_dir = conf_dir or os.environ.get("YARN_CONF_DIR") or os.environ.get("HADOOP_CONF_DIR")
    conf_dir = conf_dir or "/etc/hadoop/conf"
    merged: dict[str, str] = {}
    for name in ("core-site.xml", "yarn-site.xml"):
        merged.update(read_conf(os.path.join(conf_dir, name)))
    return merged


def rm_webapp_urls(conf: Mapping[str, str]) -> list[str]:
    """The RM web addresses (with scheme) in the order YARN lists them (HA ids first)."""
    https = conf.get("yarn.http.policy", "HTTP_ONLY").upper() == "HTTPS_ONLY"
    key = "yarn.resourcemanager.webapp.https.address" if https else "yarn.resourcemanager.webapp.address"
    scheme = "https" if https else "http"
    ids = [i.strip() for i in conf.get("yarn.resourcemanager.ha.rm-ids", "").split(",") if i.strip()]
    if conf.get("yarn.resourcemanager.ha.enabled", "false").lower() == "true" and ids:
        addrs = [conf.get(f"{key}.{rm_id}") for rm_id in ids]
    else:
        addrs = [conf.get(key)]
    return [f"{scheme}://{a}" for a in addrs if a]
