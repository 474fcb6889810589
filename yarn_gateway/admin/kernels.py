"""``yarn-gateway kernels list|show <id>|kill <id>``: look at and stop kernels of a running gateway.

Admins (``AccessPolicy.admin_users``) see every kernel with its owner and YARN application;
other users see their own kernels (without those columns). The commands use only the
public REST API, so they work against any gateway the caller can reach.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from traitlets import Bool, Float, Unicode
from traitlets.config import Application

from .rest import AdminError, GatewayAPI, resolve_token

COLUMNS = (("id", "ID"), ("name", "KERNELSPEC"), ("owner", "OWNER"), ("execution_state", "STATE"),
           ("connections", "CONNECTIONS"), ("last_activity", "LAST ACTIVITY"), ("app_id", "APPLICATION"))
USAGE = "usage: yarn-gateway kernels list | show <kernel-id> | kill <kernel-id> [options]"


def format_table(kernels: list[dict[str, Any]]) -> str:
    """A plain text table; the owner and application columns only when the gateway gave them."""
    cols = [(k, h) for k, h in COLUMNS if k not in ("owner", "app_id") or any(k in m for m in kernels)]
    rows = [[h for _k, h in cols]]
    rows += [["-" if m.get(k) in (None, "") else str(m.get(k)) for k, _h in cols] for m in kernels]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def format_detail(kernel: dict[str, Any]) -> str:
    width = max(len(k) for k in kernel) if kernel else 0
    return "\n".join(f"{k.ljust(width)}  {'-' if v in (None, '') else v}" for k, v in kernel.items())


class KernelsApp(Application):
    """yarn-gateway kernels."""

    name = "yarn-gateway kernels"
    description = "List, show or kill the kernels of a running gateway (admins see every kernel)."
    examples = """
    yarn-gateway kernels list --url=https://edge01:8888 --token-file=~/.yarn-gateway-token
    yarn-gateway kernels show 0f6c...-... --kerberos --url=https://edge01:8888
    yarn-gateway kernels kill 0f6c...-... --json
    """

    url = Unicode("http://127.0.0.1:8888", config=True, help="The gateway's base URL.")
    token = Unicode("", config=True, help="Token to authenticate with (prefer --token-file or $YARN_GATEWAY_TOKEN: "
                    "a token on the command line is visible to other users of the host).")
    token_file = Unicode("", config=True, help="File holding the token (its first non-comment line).")
    kerberos = Bool(False, config=True, help="Authenticate with Kerberos (SPNEGO) from your ticket cache (kinit).")
    service = Unicode("HTTP", config=True, help="Service part of the gateway's Kerberos principal.")
    principal_host = Unicode("", config=True, help="Host part of the gateway's principal (default: the URL's host).")
    as_json = Bool(False, config=True, help="Print JSON instead of a table.")
    timeout = Float(30.0, config=True, help="Seconds to wait for the gateway.")
    ca_file = Unicode("", config=True, help="CA bundle to verify the gateway's TLS certificate.")

    aliases = {"url": "KernelsApp.url", "token": "KernelsApp.token", "token-file": "KernelsApp.token_file",
               "timeout": "KernelsApp.timeout", "ca-file": "KernelsApp.ca_file", "service": "KernelsApp.service",
               "principal-host": "KernelsApp.principal_host", "log-level": "Application.log_level"}
    flags = {
        "kerberos": ({"KernelsApp": {"kerberos": True}}, "Authenticate with Kerberos (SPNEGO)."),
        "json": ({"KernelsApp": {"as_json": True}}, "Print JSON."),
    }

    def api(self) -> GatewayAPI:
        token = "" if self.kerberos else resolve_token(self.token, self.token_file)
        return GatewayAPI(self.url, token=token, kerberos=self.kerberos, service=self.service,
                          hostname=self.principal_host, timeout=self.timeout, verify=self.ca_file or True)

    def start(self) -> None:
        args = list(self.extra_args)
        action = args[0] if args else ""
        try:
            if action == "list" and len(args) == 1:
                self.do_list()
            elif action in ("show", "kill") and len(args) == 2:
                self.do_show(args[1]) if action == "show" else self.do_kill(args[1])
            else:
                print(USAGE, file=sys.stderr)
                self.exit(2)
        except AdminError as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exit(1)

    def _with_detail(self, fetch: Any) -> Any:
        """Ask for admin detail; a non-admin (403) gets the plain answer instead."""
        try:
            return fetch(True)
        except AdminError as exc:
            if exc.status != 403:
                raise
            self.log.debug("not an admin; listing without details")
            return fetch(False)

    def do_list(self) -> None:
        api = self.api()
        kernels = self._with_detail(lambda detail: api.kernels(detail))
        kernels.sort(key=lambda m: (str(m.get("owner", "")), str(m.get("last_activity", ""))))
        print(json.dumps(kernels, indent=2) if self.as_json else format_table(kernels))

    def do_show(self, kernel_id: str) -> None:
        api = self.api()
        kernel = self._with_detail(lambda detail: api.kernel(kernel_id, detail))
        print(json.dumps(kernel, indent=2) if self.as_json else format_detail(kernel))

    def do_kill(self, kernel_id: str) -> None:
        self.api().kill(kernel_id)
        print(json.dumps({"id": kernel_id, "killed": True}) if self.as_json else f"Killed kernel {kernel_id}")
