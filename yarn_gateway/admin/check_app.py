"""``yarn-gateway check [--config FILE]``: validate a configuration and the environment it needs.

The configuration is loaded exactly as the daemon loads it (``--config``, Python or JSON),
then every check prints one line ``OK|WARN|FAIL <name>: <detail>``. The exit status is 0
only when nothing FAILed, so the command fits a deployment pipeline or a service's
``ExecStartPre``.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Optional

from traitlets import HasTraits, TraitError, Unicode
from traitlets.config import Application, Config

from ..config_file import ConfigFileError, read_config_file
from .check_gateway import (
    check_authenticator,
    check_kernelspecs,
    check_listen,
    check_local_kernels,
    check_session_store,
    yarn_specs,
)
from .check_yarn import check_yarn
from .checks import FAIL, OK, WARN, Check

if TYPE_CHECKING:
    from ..app import YarnGatewayApp


def load_config(path: str) -> tuple[Optional[YarnGatewayApp], list[Check]]:
    """A daemon app configured from ``path`` (not started), and what loading it found.

    Read as the daemon reads it (:func:`~yarn_gateway.config_file.read_config_file`); what
    does not load is a FAIL line naming the file and the line.
    """
    from ..app import YarnGatewayApp

    if not path:
        return YarnGatewayApp(log_level=logging.WARNING), [Check(OK, "config", "no --config: checking the defaults")]
    try:
        cfg = read_config_file(path)
    except ConfigFileError as exc:
        return None, [Check(FAIL, "config", str(exc))]
    checks = [Check(OK, "config", f"{path} loads"), *_config_sections(cfg, YarnGatewayApp().classes)]
    try:
        app = YarnGatewayApp(config=cfg, log_level=logging.WARNING)  # the check lines are the report
    except Exception as exc:
        failed = any(c.status == FAIL for c in checks)  # the same error, already named
        return None, checks if failed else [*checks, Check(FAIL, "config", f"YarnGatewayApp: {exc}")]
    return app, checks


def _config_sections(cfg: Config, classes: list[Any]) -> Iterator[Check]:
    """Every setting of a yarn-gateway class must exist and hold a valid value (typos are silent otherwise)."""
    ours: dict[str, Any] = {cls.__name__: cls for cls in classes}
    for section in sorted(cfg):
        cls = ours.get(section)
        values = cfg[section]
        if cls is None or not hasattr(values, "items"):
            continue
        traits = cls.class_traits(config=True)
        for key in sorted(values):
            if key not in traits:
                near = difflib.get_close_matches(key, list(traits), 1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                yield Check(FAIL, "config", f"{section}.{key} is not a setting of {section}{hint}")
                continue
            try:  # the trait's own type check (a class's @validate hooks run when the daemon builds it)
                traits[key].validate(HasTraits(), values[key])
            except TraitError as exc:
                yield Check(FAIL, "config", f"{section}.{key} = {values[key]!r}: {exc}")
            except Exception:  # noqa: S112 - a trait that cannot be checked detached is checked at start
                continue


def run_checks(app: YarnGatewayApp) -> Iterator[Check]:
    """Every check of a loaded configuration, in a useful order (cheap and local first)."""
    groups: list[tuple[str, Callable[[], Iterator[Check]]]] = [
        ("listen", lambda: check_listen(app)),
        ("authenticator", lambda: check_authenticator(app)),
        ("kernelspecs", lambda: check_kernelspecs(app)),
        ("local-kernels", lambda: check_local_kernels(app)),
        ("session-store", lambda: check_session_store(app)),
        ("yarn", lambda: check_yarn(app, yarn_specs(app))),
    ]
    for name, group in groups:
        try:
            yield from group()
        except Exception as exc:  # one broken group must not hide the others
            yield Check(FAIL, name, f"check failed: {type(exc).__name__}: {exc}")


class CheckApp(Application):
    """yarn-gateway check."""

    name = "yarn-gateway check"
    description = ("Validate a configuration and the environment (kernelspecs, spark-submit, HADOOP_CONF_DIR, "
                   "ResourceManager, keytab, ports, session store): one line per check, exit 1 on any FAIL.")
    config_file = Unicode("", config=True, help="The daemon's config file (as `yarn-gateway --config`).")
    aliases = {"config": "CheckApp.config_file", "log-level": "Application.log_level"}

    def start(self) -> None:
        app, loaded = load_config(self.config_file)
        counts = {OK: 0, WARN: 0, FAIL: 0}
        for check in loaded:
            self._emit(check, counts)
        if app is not None:
            for check in run_checks(app):
                self._emit(check, counts)
        print(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")
        self.exit(1 if counts[FAIL] else 0)

    @staticmethod
    def _emit(check: Check, counts: dict[str, int]) -> None:
        counts[check.status] += 1
        print(check.line(), flush=True)


def main(argv: Optional[list[str]] = None) -> None:  # pragma: no cover - convenience for `python -m`
    app = CheckApp()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
