"""resource_management.libraries.script.script (stand-in): Script and its command dispatch.

Invoked as the Ambari agent does::

    python <script.py> <COMMAND> <command.json> <service package dir> <structured-out.json> <log level> <tmp dir>

Exit status 0 on success; 1 when the command fails or STATUS finds the component stopped.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from resource_management.core.exceptions import ComponentIsNotRunning, Fail


class Environment:
    def __init__(self) -> None:
        self.params: Any = None

    def set_params(self, module: Any) -> None:
        self.params = module


class Script:
    config: dict[str, Any] = {}
    structured_out: dict[str, Any] = {}
    tmp_dir = "/tmp"

    @staticmethod
    def get_config() -> dict[str, Any]:
        return Script.config

    @staticmethod
    def get_tmp_dir() -> str:
        return Script.tmp_dir

    def install_packages(self, env: Environment) -> None:
        # The real agent installs the <osSpecifics> packages (yarn-gateway RPM) with yum/dnf.
        Script.structured_out.setdefault("installed_packages", []).append("yarn-gateway")

    def put_structured_out(self, data: dict[str, Any]) -> None:
        Script.structured_out.update(data)

    def execute(self) -> None:
        command, config_path, _basedir, out_path, _level, tmp_dir = sys.argv[1:7]
        with open(config_path) as f:
            Script.config = json.load(f)
        Script.tmp_dir = tmp_dir
        method = getattr(self, command.lower(), None)
        if method is None:
            raise Fail(f"Script {type(self).__name__} has no command {command}")
        rc = 0
        try:
            method(Environment())
        except ComponentIsNotRunning:
            rc = 1
        except Fail as exc:
            print(f"Fail: {exc}", file=sys.stderr)
            rc = 1
        with open(out_path, "w") as f:
            json.dump(Script.structured_out, f)
        sys.exit(rc)
