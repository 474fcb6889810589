"""YarnGatewayApp: configuration, command line, start and stop.

``yarn-gateway`` runs the daemon in the foreground; ``yarn-gateway generate-config``
writes a commented configuration file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys
from typing import Any, Optional

from jupyter_client.kernelspec import KernelSpecManager
from tornado import httpserver, web
from traitlets import Bool, Float, Int, List, TraitError, Unicode, default, observe, validate
from traitlets.config import Application, catch_config_error

from . import __version__
from .auth.base import Authenticator, is_loopback
from .auth.kerberos import KerberosAuthenticator
from .auth.none import NoneAuthenticator
from .auth.policy import AccessPolicy
from .auth.token import TokenAuthenticator
from .config_file import ConfigFileError, read_config_file
from .handlers.api import VersionHandler
from .handlers.base import NotFoundHandler, parse_origins
from .handlers.channels import ChannelsHandler
from .handlers.health import HealthCheck, HealthHandler, ProbeHandler, rm_check, rm_configured
from .handlers.kernels import KernelActionHandler, KernelHandler, KernelsHandler
from .handlers.kernelspecs import KernelSpecHandler, KernelSpecResourceHandler, KernelSpecsHandler
from .handlers.metrics import MetricsHandler
from .kerberos import KerberosLogin
from .kernels.housekeeping import HOUSEKEEPING
from .kernels.registry import KernelRegistry
from .logs import safe_text
from .plugins import resolve_class
from .utils import run_blocking

AUTHENTICATORS = {
    "token": "yarn_gateway.auth.token.TokenAuthenticator",
    "none": "yarn_gateway.auth.none.NoneAuthenticator",
    "kerberos": "yarn_gateway.auth.kerberos.KerberosAuthenticator",
}

_UUID = r"(?P<kernel_id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"


def builtin_kernelspec_dir() -> str:
    """The kernelspecs shipped with the package: the YARN ones, and python_local (a kernel on
    the gateway host, refused unless AccessPolicy.local_kernel_users/groups name the user)."""
    import yarn_gateway.kernelspecs as ks

    return os.path.dirname(os.path.abspath(str(ks.__file__)))


class GenerateConfigApp(Application):
    """yarn-gateway generate-config: write a commented config file."""

    name = "yarn-gateway generate-config"
    description = "Write a commented yarn_gateway_config.py with every setting and its default."
    output = Unicode("yarn_gateway_config.py", config=True, help="Where to write the file.")
    force = Bool(False, config=True, help="Overwrite an existing file.")
    aliases = {"output": "GenerateConfigApp.output"}
    flags = {"force": ({"GenerateConfigApp": {"force": True}}, "Overwrite an existing file.")}

    def start(self) -> None:
        if os.path.exists(self.output) and not self.force:
            print(f"{self.output} exists; use --force to overwrite", file=sys.stderr)
            self.exit(1)
        assert isinstance(self.parent, YarnGatewayApp)
        text = self.parent.generate_config_file()
        with open(self.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"Wrote {self.output}")


class YarnGatewayApp(Application):
    """The yarn-gateway daemon."""

    name = "yarn-gateway"
    version = __version__
    description = "Jupyter kernels in YARN cluster mode for desktop notebooks (jupyter lab --gateway-url=...)."

    subcommands = {
        "generate-config": (GenerateConfigApp, GenerateConfigApp.description),
        "install-kernelspecs": ("yarn_gateway.kernels.install.InstallKernelspecsApp",
                                "Install the YARN kernelspecs (with launchers) into a directory."),
        "kernels": ("yarn_gateway.admin.kernels.KernelsApp", "List, show or kill kernels of a running gateway."),
        "check": ("yarn_gateway.admin.check_app.CheckApp", "Validate a configuration and its environment."),
    }
    aliases = {
        "ip": "YarnGatewayApp.ip",
        "port": "YarnGatewayApp.port",
        "config": "YarnGatewayApp.config_file",
        "token": "TokenAuthenticator.token",
        "certfile": "YarnGatewayApp.certfile",
        "keyfile": "YarnGatewayApp.keyfile",
        "authenticator": "YarnGatewayApp.authenticator_class",
        "log-level": "Application.log_level",
        "pid-file": "YarnGatewayApp.pid_file",
    }

    ip = Unicode("127.0.0.1", config=True, help="Address to listen on.")
    port = Int(8888, config=True, help="Port to listen on (0 = any free port).")
    base_url = Unicode("/", config=True, help="URL prefix of every endpoint.")
    config_file = Unicode("", config=True, help="A Python config file (see `yarn-gateway generate-config`).")
    certfile = Unicode("", config=True, help="TLS certificate (PEM). With keyfile, the gateway serves HTTPS/WSS.")
    keyfile = Unicode("", config=True, help="TLS private key (PEM).")
    authenticator_class = Unicode(
        "token", config=True,
        help="Authenticator: 'token', 'none' (loopback only) or an import path of an Authenticator subclass.",
    )
    @validate("authenticator_class")
    def _valid_authenticator_class(self, proposal: Any) -> str:
        resolve_class(proposal["value"], AUTHENTICATORS, Authenticator, "YarnGatewayApp.authenticator_class")
        return str(proposal["value"])

    kernelspec_dirs = List(
        Unicode(), config=True,
        help="Directories holding kernelspecs (default: the kernelspecs shipped with yarn-gateway). Kernelspecs "
        "that run on the gateway host (any provisioner but the YARN one) are served only to "
        "AccessPolicy.local_kernel_users/local_kernel_groups.",
    )
    default_kernel_name = Unicode(
        "spark_python_yarn_cluster", config=True, help="Kernelspec used when a start request names none."
    )
    allow_origin = Unicode(
        "", config=True,
        help="Web origins (scheme://host[:port], separated by spaces or commas; '*' = any) that may send "
        "writes (POST, PUT, PATCH, DELETE) and open websockets from a browser. Requests whose Origin is "
        "another site are refused (403), so a web page cannot use a browser's Kerberos (SPNEGO) credentials "
        "against the gateway. Requests without an Origin header (desktop Jupyter servers, scripts) and "
        "same-origin requests are always allowed. Default: none.",
    )
    max_request_body = Int(1024 * 1024, config=True, help="Largest REST request body in bytes (larger: 413).")
    websocket_max_message_size = Int(
        16 * 1024 * 1024, config=True,
        help="Largest websocket message from a client, in bytes (a larger one closes the connection with 1009). "
        "A legacy-protocol (JSON text) message is parsed and serialised again on the event loop, so large ones "
        "delay every other client; binary buffers and the v1 protocol's parts are passed on unparsed.",
    )
    websocket_ping_interval = Float(30.0, config=True, help="Seconds between websocket pings (keeps proxies open).")
    executor_threads = Int(16, config=True, help="Threads for blocking calls (RM REST, Kerberos, filesystem).")
    pid_file = Unicode("", config=True, help="Write the daemon's pid here while it runs (for service managers "
                       "that want one); removed on a clean stop. Refuses to start if it names a live process.")

    metrics_public = Bool(
        False, config=True,
        help="Serve GET /metrics without authentication (for Prometheus scrapers that cannot authenticate). "
        "The metrics name users (kernels by user) but carry no secrets.",
    )
    log_json = Bool(False, config=True, help="Log one JSON object per line (ts, level, logger, message, and "
                    "kernel_id/app_id/user when the line is about a kernel) instead of text.")
    health_cache_seconds = Float(
        5.0, config=True, help="Seconds a ResourceManager health probe's answer is reused by /api/health and /healthz."
    )

    @observe("log_json")
    def _log_json_changed(self, change: Any) -> None:
        self._configure_logging()

    def get_default_logging_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_default_logging_config()
        if self.log_json and "console" in config.get("formatters", {}):
            config["formatters"]["console"] = {"()": "yarn_gateway.logs.JsonFormatter"}
        if "console" in config.get("handlers", {}):  # one record, one line: no client can forge log lines
            config.setdefault("filters", {})["escape_control"] = {"()": "yarn_gateway.logs.EscapeControlFilter"}
            config["handlers"]["console"].setdefault("filters", []).append("escape_control")
        return config

    @default("kernelspec_dirs")
    def _kernelspec_dirs_default(self) -> list[str]:
        return [builtin_kernelspec_dir()]

    @validate("base_url")
    def _validate_base_url(self, proposal: Any) -> str:
        value = str(proposal["value"])
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"

    @default("log_level")
    def _log_level_default(self) -> int:
        return logging.INFO

    @default("log_format")
    def _log_format_default(self) -> str:
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s] %(message)s"

    @property
    def classes(self) -> list[type]:  # type: ignore[override]
        from .kernels.limits import KernelLimits
        from .kernels.params import KernelParameters
        from .kernels.sessions import SessionKeeper
        from .kernels.store import DirectoryStore
        from .kernels.zkstore import ZooKeeperStore
        from .provisioners.services import YarnServices
        from .provisioners.yarn import YarnProvisioner

        return [YarnGatewayApp, TokenAuthenticator, NoneAuthenticator, AccessPolicy, KernelRegistry, YarnServices,
                YarnProvisioner, SessionKeeper, DirectoryStore, ZooKeeperStore, KerberosAuthenticator, KerberosLogin,
                KernelLimits, KernelParameters]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_server: Optional[httpserver.HTTPServer] = None
        self.registry: Optional[KernelRegistry] = None
        self._stop_event: Optional[asyncio.Event] = None
        self.kerberos_login: Optional[KerberosLogin] = None

    @catch_config_error
    def initialize(self, argv: Optional[list[str]] = None) -> None:
        super().initialize(argv)
        if self.subapp is not None:
            return
        if self.config_file:
            try:
                file_config = read_config_file(self.config_file)
            except ConfigFileError as exc:
                self.log.critical("%s", exc)
                self.exit(2)
            self.update_config(file_config)
            self.log.info("Configuration read from %s", os.path.abspath(self.config_file))
            # The command line wins over the file.
            self.update_config(self.cli_config)
        # Our modules log under "yarn_gateway.*": route them through the app's handler.
        logger = logging.getLogger("yarn_gateway")
        logger.setLevel(self.log.level)
        logger.parent = self.log
        if "token" in self.cli_config.get("TokenAuthenticator", {}):
            self.log.warning(
                "*** A token given on the command line (--token / --TokenAuthenticator.token) is visible to every "
                "local user (ps, /proc/<pid>/cmdline). Use the environment variable YARN_GATEWAY_TOKEN or "
                "TokenAuthenticator.token_file (mode 0600) instead. ***")

    # -- assembly -----------------------------------------------------------------------
    def make_authenticator(self) -> Authenticator:
        cls = resolve_class(self.authenticator_class, AUTHENTICATORS, Authenticator,
                            "YarnGatewayApp.authenticator_class")
        auth: Authenticator = cls(parent=self, log=self.log)
        auth.check_bind(self.ip)
        if isinstance(auth, (TokenAuthenticator, KerberosAuthenticator)):
            auth.check_config()
        return auth

    def warn_local_kernels(self, policy: AccessPolicy) -> None:
        """Local kernels run user code as this daemon's account: say so loudly off loopback."""
        if not policy.local_kernels_enabled:
            return
        who = ", ".join(sorted(policy.local_kernel_users) + [f"group {g}" for g in sorted(policy.local_kernel_groups)])
        if not is_loopback(self.ip):
            self.log.warning(
                "*** Local kernels are enabled (AccessPolicy.local_kernel_users/groups: %s) on %r, a non-loopback "
                "address: their code runs as this gateway's Unix account and can read its token file, keytab and "
                "credential cache. Use YARN kernelspecs only on a shared host (`yarn-gateway check` fails). ***",
                who, self.ip)
        else:
            self.log.info("Local kernels (on this host, as the gateway's account) are enabled for: %s", who)

    def make_web_app(self, registry: KernelRegistry, authenticator: Authenticator, policy: AccessPolicy,
                     ksm: KernelSpecManager) -> web.Application:
        b = self.base_url
        handlers: list[Any] = [
            (rf"{b}api/?", VersionHandler),
            (rf"{b}api/kernelspecs/?", KernelSpecsHandler),
            (rf"{b}api/kernelspecs/(?P<name>[^/]+)/?", KernelSpecHandler),
            (rf"{b}kernelspecs/(?P<name>[^/]+)/(?P<fname>[^/]+)", KernelSpecResourceHandler),
            (rf"{b}api/kernels/?", KernelsHandler),
            (rf"{b}api/kernels/{_UUID}/?", KernelHandler),
            (rf"{b}api/kernels/{_UUID}/(?P<action>interrupt|restart)/?", KernelActionHandler),
            (rf"{b}api/kernels/{_UUID}/channels", ChannelsHandler),
            (rf"{b}api/health/?", HealthHandler),
            (rf"{b}healthz", ProbeHandler),
            (rf"{b}metrics", MetricsHandler),
            (r".*", NotFoundHandler),
        ]
        return web.Application(
            handlers,
            registry=registry,
            authenticator=authenticator,
            policy=policy,
            kernel_spec_manager=ksm,
            base_url=b,
            default_kernel_name=self.default_kernel_name,
            allow_origin=parse_origins(self.allow_origin),
            max_request_body=self.max_request_body,
            websocket_max_message_size=self.websocket_max_message_size,
            websocket_ping_interval=self.websocket_ping_interval,
            websocket_ping_timeout=self.websocket_ping_interval * 3,
            log_function=self._log_request,
            health_checks=self.health_checks(registry),
            metrics_public=self.metrics_public,
        )

    def health_checks(self, registry: Optional[KernelRegistry] = None) -> list[HealthCheck]:
        """Named checks behind GET /api/health: only those that are configured (no RM
        configured: no RM check; no keytab: no Kerberos check; store 'none': no store check)."""
        checks: list[HealthCheck] = []
        login = self.kerberos_login
        if login is not None:
            async def kerberos() -> dict[str, Any]:
                return login.health()

            checks.append(HealthCheck("kerberos", kerberos))
        if registry is not None and rm_configured(registry.yarn_services):
            checks.append(rm_check(registry.yarn_services, self.health_cache_seconds))
        if registry is not None and registry.sessions.store != "none":
            checks.append(HealthCheck("session_store", registry.sessions.probe))
        return checks

    def _ticket_remaining(self) -> Optional[float]:
        login = self.kerberos_login
        ticket = login.ticket if login is not None else None
        return ticket.remaining() if ticket is not None else None

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.DEBUG if status < 400 else logging.INFO
        if status >= 500:
            level = logging.WARNING
        self.log.log(level, "%d %s %s %.1fms", status, safe_text(handler.request.method),
                     safe_text(handler.request.path), 1000.0 * handler.request.request_time())

    def ssl_options(self) -> Optional[ssl.SSLContext]:
        if not self.certfile:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.certfile, self.keyfile or None)
        return ctx

    # -- run ----------------------------------------------------------------------------
    async def start_server(self) -> int:
        """Build everything and start listening; return the bound port."""
        from .utils import configure_executor

        configure_executor(self.executor_threads)
        authenticator = self.make_authenticator()
        policy = AccessPolicy(parent=self, log=self.log)
        self.warn_local_kernels(policy)
        ksm = KernelSpecManager(parent=self, kernel_dirs=list(self.kernelspec_dirs), ensure_native_kernel=False)
        login = KerberosLogin(parent=self, log=self.log)
        if login.enabled:
            await login.start()
            self.kerberos_login = login
        self.registry = KernelRegistry(parent=self, log=self.log, kernel_spec_manager=ksm, policy=policy,
                                       kerberos=self.kerberos_login)
        await self.registry.sessions.prepare()  # an unsafe session store stops the start (ValueError)
        if self.kerberos_login is not None:
            self.registry.metrics.ticket_remaining = self._ticket_remaining
        app = self.make_web_app(self.registry, authenticator, policy, ksm)
        self.http_server = httpserver.HTTPServer(
            app, ssl_options=self.ssl_options(), max_body_size=16 * 1024 * 1024, xheaders=False
        )
        sockets = __import__("tornado.netutil").netutil.bind_sockets(self.port, self.ip)
        self.http_server.add_sockets(sockets)
        port: int = sockets[0].getsockname()[1]
        scheme = "https" if self.certfile else "http"
        self.log.info("yarn-gateway %s listening on %s://%s:%d%s (authenticator: %s)", __version__, scheme,
                      self.ip, port, self.base_url, authenticator.kind)
        self._recovery = asyncio.ensure_future(self._recover(self.registry))
        return port

    async def _recover(self, registry: KernelRegistry) -> None:
        """Re-attach recorded kernels, then start sweeping and culling (in the background:
        requests are served meanwhile, and a request for a recorded kernel attaches it)."""
        try:
            await registry.sessions.recover_all()
        except Exception as exc:
            self.log.error("Recovering kernels failed: %s", exc)
        registry.sessions.start_housekeeping(*HOUSEKEEPING)
        try:  # the listener's RSA key takes a moment to make: not on the first user's launch
            yarn = registry.yarn_services
            site = os.path.join(yarn.hadoop_conf_dir, "yarn-site.xml")
            configured = bool(yarn.rm_endpoints) or await run_blocking(os.path.isfile, site)
            if configured and await run_blocking(_has_yarn_kernelspecs, registry.kernel_spec_manager):
                await registry.yarn_services.listener()
        except Exception as exc:
            self.log.warning("Response listener not started in advance: %s", exc)

    async def stop_server(self) -> None:
        recovery = getattr(self, "_recovery", None)
        if recovery is not None and not recovery.done():
            recovery.cancel()
        if self.http_server is not None:
            self.http_server.stop()
            if self.registry is not None:  # their clients still get an answer (503) before connections close
                await self.registry.cancel_launches()
            await self.http_server.close_all_connections()
        if self.registry is not None:
            await self.registry.stop()
        if self.kerberos_login is not None:
            await self.kerberos_login.stop()

    async def _run(self) -> None:
        await self.run_until_stopped()

    async def run_until_stopped(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully."""
        self._stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        await self.start_server()
        self._write_pid_file()
        try:
            await self._stop_event.wait()
            self.log.info("Stopping")
            await self.stop_server()
            self.log.info("Stopped")
        finally:
            self._remove_pid_file()

    def _write_pid_file(self) -> None:
        if not self.pid_file:
            return
        try:
            with open(self.pid_file, encoding="ascii") as f:
                old = int(f.read().strip() or 0)
        except (OSError, ValueError):
            old = 0
        if old and old != os.getpid():
            try:
                os.kill(old, 0)
            except ProcessLookupError:
                pass
            else:
                raise OSError(f"pid file {self.pid_file} names a running process ({old}); is the gateway running?")
        tmp = f"{self.pid_file}.{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, self.pid_file)

    def _remove_pid_file(self) -> None:
        if self.pid_file:
            try:
                with open(self.pid_file, encoding="ascii") as f:
                    if int(f.read().strip() or 0) != os.getpid():
                        return
                os.remove(self.pid_file)
            except (OSError, ValueError):
                pass

    def _on_signal(self, sig: int) -> None:
        self.log.info("Received %s", signal.Signals(sig).name)
        if self._stop_event is not None:
            self._stop_event.set()

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            return
        try:
            asyncio.run(self._run())
        except (ValueError, OSError, TraitError) as exc:  # TraitError: a setting read at start is invalid
            self.log.critical("Cannot start: %s", exc)
            self.exit(1)


def _has_yarn_kernelspecs(ksm: KernelSpecManager) -> bool:
    for info in ksm.get_all_specs().values():
        prov = info["spec"].get("metadata", {}).get("kernel_provisioner", {})
        if prov.get("provisioner_name") == "yarn-provisioner":
            return True
    return False


def main(argv: Optional[list[str]] = None) -> None:
    app = YarnGatewayApp.instance()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main()
