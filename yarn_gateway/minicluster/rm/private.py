"""The minicluster's private REST API (never in Hadoop), served by every RM endpoint.

- ``POST /ws/v1/minicluster/apps/{appid}/register`` body ``{"host": str, "rpcPort": int}``,
  header ``X-Minicluster-Am-Token: <MINICLUSTER_AM_TOKEN of the container>`` -> 200
  ``{"applicationId","appAttemptId","state":"RUNNING"}``; the app becomes RUNNING, progress 10.0.
- ``POST /ws/v1/minicluster/apps/{appid}/unregister`` body ``{"finalStatus": "SUCCEEDED"|"FAILED"|
  "KILLED", "diagnostics": str}``, same header -> 200 ``{..., "state": "FINAL_SAVING"}``; the app
  goes FINAL_SAVING -> FINISHING (app object already says FINISHED, finishedTime 0) and FINISHED
  with that finalStatus once the AM container exits.
- ``POST /ws/v1/minicluster/failover`` (header ``X-Minicluster-Admin-Token`` = the content of the
  file named by ``minicluster.admin.token.file`` in yarn-site.xml, or a caller in
  ``yarn.admin.acl``) -> 200 ``{"active": "rm2"}``: the standby becomes active. Never redirected.
Errors of the private API use the RemoteException JSON shape (403 bad token, 404 unknown app,
409 wrong state). They skip SPNEGO (the AM has no Kerberos ticket, like an AMRMToken).
"""

from __future__ import annotations

import secrets

from yarn_gateway.minicluster.rm.apps import lookup_app
from yarn_gateway.minicluster.rm.errors import bad_request
from yarn_gateway.minicluster.rm.webapp import RMHandler


class AMRegisterHandler(RMHandler):
    am_endpoint = True

    def post(self, app_id: str, action: str) -> None:
        app = lookup_app(self.rm.core.apps, app_id)
        token = self.request.headers.get("X-Minicluster-Am-Token", "")
        data = self.body_json()
        if action == "register":
            try:
                host, port = str(data["host"]), int(data["rpcPort"])
            except (KeyError, TypeError, ValueError):
                raise bad_request("register needs host and rpcPort") from None
            att = self.rm.core.register(app, token, host, port)
        else:
            att = self.rm.core.unregister(app, token, str(data.get("finalStatus") or ""),
                                          str(data.get("diagnostics") or ""))
        self.write_json({"applicationId": app.app_id, "appAttemptId": att.attempt_id, "state": app.state})


class FailoverHandler(RMHandler):
    async def post(self) -> None:
        sec = self.rm.security
        given = self.request.headers.get("X-Minicluster-Admin-Token", "")
        ok = bool(given) and secrets.compare_digest(given.encode(), sec.admin_token.encode())
        if not ok and not given and not self.caller.anonymous:
            ok = sec.admin_acl.allows(self.user, await sec.groups_of(self.user))
        if not ok:
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"User {self.user} is not an admin of this minicluster")
            return
        active = self.rm.failover()
        self.write_json({"active": active})
