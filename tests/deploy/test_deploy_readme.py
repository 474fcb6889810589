"""Issue 8 acceptance 4: README's "Install on an edge node" has the three copy-paste sequences."""

from __future__ import annotations

import os
import re

from deploy_support import REPO


def test_deploy_readme_install_section() -> None:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert "\n## Install on an edge node\n" in text
    section = text.split("\n## Install on an edge node\n", 1)[1].split("\n## ", 1)[0]
    for way in ("**RPM**", "**Ansible**", "**Ambari or Cloudera Manager**"):
        assert way in section, way
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    for block in blocks:
        lines = [ln.split("#", 1)[0].strip() for ln in block.splitlines()]
        lines = [ln for ln in lines if ln]
        assert "systemctl start yarn-gateway" in lines[-2], lines[-2:]
        assert re.match(r"curl -H \"Authorization: token [^\"]+\" https?://[^ ]+:8888/api$", lines[-1]), lines[-1]
    assert "rpm -i" in blocks[0] or "dnf install" in blocks[0]
    assert "ansible-playbook" in blocks[1] and "site.yml" in blocks[1]
    assert "install-mpack" in blocks[2] and "csd" in blocks[2]
