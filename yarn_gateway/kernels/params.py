"""Kernel parameters: the Spark settings a kernelspec lets its users choose.

A kernelspec declares them in ``metadata.yarn_gateway.parameters``, a JSON object
``name -> declaration``::

    "driver_memory": {"max": "8g"}                 # a built-in, with a tighter bound
    "queue": {"type": "enum", "choices": ["default", "small"], "default": "default"}
    "shuffle_partitions": {"type": "int", "min": 1, "max": 2000, "default": 200,
                           "env": "KERNEL_SPARK_SQL_SHUFFLE_PARTITIONS",
                           "maps_to": "spark.sql.shuffle.partitions",
                           "description": "spark.sql.shuffle.partitions"}

Declaration keys: ``type`` (int | memory | string | bool | enum), ``default`` (applied
when the client sends nothing; absent/null: nothing is set), ``min``/``max`` (int and
memory), ``choices`` (enum), ``pattern`` (string; a full-match regex), ``env`` (the
``KERNEL_*`` name the client sets), ``maps_to`` (a Spark conf key, or ``"queue"`` for
``--queue``), ``description``. The names in :data:`BUILTINS` come with all of these;
a declaration of a built-in overrides only what it names (``{}`` takes it as is).

Memory values are Spark's sizes (``512m``, ``2g``; a bare number is MiB); booleans are
true/false (also yes/no, on/off, 1/0). The client sends strings, e.g.
``KERNEL_SPARK_DRIVER_MEMORY=2g``. Values are passed on in canonical form.

Admin bounds (:class:`KernelParameters`, gateway configuration) cap what a kernelspec
may declare: ``bounds`` is keyed by target (``maps_to``), so renaming a parameter does
not escape it; ``allowed_targets`` lists the targets a kernelspec may map to at all. The
effective bounds are the intersection; a default outside them is moved inside (the
nearest bound, or the first allowed choice). ``GET /api/kernelspecs`` shows the
effective declarations (:meth:`KernelParameters.expose`).

Refusals: a bad value, or a parameter-like name (``KERNEL_SPARK_*`` or a built-in's env)
this kernelspec does not declare, is a 400 listing each offender with what is allowed; a
kernelspec whose declarations are invalid is a 500 naming the kernelspec (the admin's).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from traitlets import Dict, List, Unicode
from traitlets.config import LoggingConfigurable

from ..errors import GatewayError

TYPES = ("int", "memory", "string", "bool", "enum")
QUEUE = "queue"
#: Client names that look like parameters: refused when the kernelspec does not declare them.
PARAM_PREFIX = "KERNEL_SPARK_"
#: KERNEL_* names the gateway itself sets or reads: never a parameter.
RESERVED_ENVS = frozenset({"KERNEL_USERNAME", "KERNEL_ID", "KERNEL_LAUNCH_TIMEOUT", "KERNEL_LAUNCH_TOKEN",
                           "KERNEL_WORKING_DIR"})


def _builtin(type_: str, env: str, maps_to: str, default: Any, description: str, **bounds: Any) -> dict[str, Any]:
    return {"type": type_, "env": env, "maps_to": maps_to, "default": default, "description": description, **bounds}


BUILTINS: dict[str, dict[str, Any]] = {
    "driver_memory": _builtin("memory", "KERNEL_SPARK_DRIVER_MEMORY", "spark.driver.memory", "1g",
                              "Memory of the kernel's Spark driver (the YARN application master)",
                              min="512m", max="8g"),
    "driver_cores": _builtin("int", "KERNEL_SPARK_DRIVER_CORES", "spark.driver.cores", 1,
                             "Cores of the kernel's Spark driver", min=1, max=4),
    "executor_instances": _builtin("int", "KERNEL_SPARK_EXECUTOR_INSTANCES", "spark.executor.instances", 2,
                                   "Executors (without dynamic allocation)", min=0, max=16),
    "executor_memory": _builtin("memory", "KERNEL_SPARK_EXECUTOR_MEMORY", "spark.executor.memory", "1g",
                                "Memory of each executor", min="512m", max="16g"),
    "executor_cores": _builtin("int", "KERNEL_SPARK_EXECUTOR_CORES", "spark.executor.cores", 1,
                               "Cores of each executor", min=1, max=8),
    "dynamic_allocation": _builtin("bool", "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED",
                                   "spark.dynamicAllocation.enabled", False,
                                   "Let Spark add and remove executors with the load"),
    "dynamic_allocation_min_executors": _builtin(
        "int", "KERNEL_SPARK_DYNAMIC_ALLOCATION_MIN_EXECUTORS", "spark.dynamicAllocation.minExecutors", 0,
        "Fewest executors with dynamic allocation", min=0, max=16),
    "dynamic_allocation_max_executors": _builtin(
        "int", "KERNEL_SPARK_DYNAMIC_ALLOCATION_MAX_EXECUTORS", "spark.dynamicAllocation.maxExecutors", 8,
        "Most executors with dynamic allocation", min=1, max=32),
    "queue": _builtin("string", "KERNEL_SPARK_YARN_QUEUE", QUEUE, None,
                      "YARN queue of the kernel's application (default: the kernelspec's or the cluster's)"),
}
BUILTIN_ENVS = frozenset(str(d["env"]) for d in BUILTINS.values())
#: (min target, max target) pairs whose chosen values must be ordered.
ORDERED = (("spark.dynamicAllocation.minExecutors", "spark.dynamicAllocation.maxExecutors"),)
EXECUTOR_INSTANCES = "spark.executor.instances"
DYNAMIC_ALLOCATION = "spark.dynamicAllocation.enabled"

_ENV = re.compile(r"KERNEL_[A-Z0-9_]+")
_CONF_KEY = re.compile(r"spark\.[A-Za-z0-9_.-]+")
_INT = re.compile(r"[+-]?\d{1,12}")
_MEMORY = re.compile(r"(\d{1,12})(k|kb|m|mb|g|gb|t|tb)?")
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DEFAULT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}"
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ParameterSpecError(ValueError):
    """A declaration (kernelspec) or admin bound (gateway config) that makes no sense."""


def memory_bytes(text: str) -> int:
    """Bytes of a Spark memory size (a bare number is MiB, as for spark.driver.memory)."""
    m = _MEMORY.fullmatch(text.strip().lower())
    if m is None:
        raise ValueError(text)
    return int(m.group(1)) * _UNITS[(m.group(2) or "m")[0]]


def memory_text(n: int) -> str:
    """The shortest exact Spark size for ``n`` bytes (``2g``, ``1536m``)."""
    for unit in ("t", "g", "m", "k"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    raise ValueError(f"{n} bytes is not a whole number of KiB")


@dataclass(frozen=True)
class Parameter:
    """One effective (built-in merged, admin-capped) parameter of a kernelspec."""

    name: str
    type: str
    env: str
    maps_to: str
    description: str = ""
    default: Optional[str] = None
    min: Optional[int] = None  # int: the number; memory: bytes
    max: Optional[int] = None
    choices: tuple[str, ...] = ()
    pattern: str = _DEFAULT_PATTERN

    def _num(self, value: Any) -> int:
        """An int/memory value (declaration or client) as a number; ValueError if malformed."""
        if isinstance(value, bool):
            raise ValueError(value)
        if self.type == "memory":
            return memory_bytes(str(value))
        if isinstance(value, int) or _INT.fullmatch(str(value).strip()):
            return int(value)
        raise ValueError(value)

    def _show(self, n: int) -> str:
        return memory_text(n) if self.type == "memory" else str(n)

    def allowed(self) -> str:
        """What values are allowed, for error messages."""
        if self.type in ("int", "memory"):
            what = "a whole number" if self.type == "int" else "a size like 512m or 2g"
            if self.min is not None and self.max is not None:
                return f"{what} from {self._show(self.min)} to {self._show(self.max)}"
            if self.min is not None:
                return f"{what} of at least {self._show(self.min)}"
            if self.max is not None:
                return f"{what} of at most {self._show(self.max)}"
            return what
        if self.type == "bool":
            return "true or false"
        if self.type == "enum":
            return "one of " + ", ".join(self.choices)
        return f"a name matching {self.pattern}"

    def parse(self, raw: Any) -> str:
        """The canonical value of ``raw`` (what Spark gets), or ValueError saying what is allowed."""
        text = raw.strip() if isinstance(raw, str) else raw
        try:
            if self.type in ("int", "memory"):
                n = self._num(text)
                if (self.min is not None and n < self.min) or (self.max is not None and n > self.max):
                    raise ValueError
                return self._show(n)
            if self.type == "bool":
                word = str(text).lower()
                if word in _TRUE | _FALSE:
                    return "true" if word in _TRUE else "false"
                raise ValueError
            if self.type == "enum":
                if isinstance(text, str) and text in self.choices:
                    return text
                raise ValueError
            if isinstance(text, str) and text.isprintable() and re.fullmatch(self.pattern, text):
                return text
            raise ValueError
        except ValueError:
            raise ValueError(self.allowed()) from None

    def describe(self) -> dict[str, Any]:
        """The JSON view clients get (in ``GET /api/kernelspecs``)."""
        out: dict[str, Any] = {"type": self.type, "env": self.env, "maps_to": self.maps_to,
                               "description": self.description, "default": self.default}
        if self.type == "int":
            out.update(min=self.min, max=self.max, default=None if self.default is None else int(self.default))
        elif self.type == "memory":
            out["min"] = None if self.min is None else self._show(self.min)
            out["max"] = None if self.max is None else self._show(self.max)
        elif self.type == "enum":
            out["choices"] = list(self.choices)
        elif self.type == "bool":
            out["default"] = None if self.default is None else self.default == "true"
        else:
            out["pattern"] = self.pattern
        return out


def _declared(metadata: Any) -> dict[str, Any]:
    section = (metadata or {}).get("yarn_gateway") if isinstance(metadata, Mapping) else None
    params = section.get("parameters") if isinstance(section, Mapping) else None
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ParameterSpecError("metadata.yarn_gateway.parameters must be an object")
    return dict(params)


def _merge(name: str, raw: Any) -> dict[str, Any]:
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParameterSpecError(f"parameter {name!r} must be an object")
    if name in BUILTINS:
        return {**BUILTINS[name], **raw}
    missing = [k for k in ("type", "env", "maps_to") if k not in raw]
    if missing:
        raise ParameterSpecError(f"parameter {name!r} is not a built-in, so it needs {', '.join(missing)}")
    return dict(raw)


def build_parameter(name: str, raw: Any, bounds: Mapping[str, Any], allowed_targets: Any) -> Parameter:
    """One effective parameter: the declaration ``raw`` merged with its built-in, capped by ``bounds``."""
    d = _merge(name, raw)
    type_, env, target = d.get("type"), d.get("env"), d.get("maps_to")
    if type_ not in TYPES:
        raise ParameterSpecError(f"parameter {name!r}: type must be one of {', '.join(TYPES)}")
    if not isinstance(env, str) or not _ENV.fullmatch(env) or env in RESERVED_ENVS:
        raise ParameterSpecError(f"parameter {name!r}: env must be a KERNEL_* name the gateway does not use")
    if not isinstance(target, str) or not (target == QUEUE or _CONF_KEY.fullmatch(target)):
        raise ParameterSpecError(f"parameter {name!r}: maps_to must be 'queue' or a spark.* conf key")
    if target not in allowed_targets:
        raise ParameterSpecError(f"parameter {name!r} maps to {target}, which the gateway does not let users "
                                 "choose (KernelParameters.allowed_targets)")
    if type_ != "enum" and "choices" in d and d["choices"] is not None:
        raise ParameterSpecError(f"parameter {name!r}: only an enum has choices")
    admin = bounds.get(target) or {}
    if not isinstance(admin, Mapping):
        raise ParameterSpecError(f"KernelParameters.bounds[{target!r}] must be an object")
    p = Parameter(name=name, type=str(type_), env=env, maps_to=target, description=str(d.get("description") or ""),
                  pattern=str(d.get("pattern") or _DEFAULT_PATTERN))
    try:
        re.compile(p.pattern)
        if p.type in ("int", "memory"):
            lo = [p._num(v) for v in (d.get("min"), admin.get("min")) if v is not None]
            hi = [p._num(v) for v in (d.get("max"), admin.get("max")) if v is not None]
            p = _replace(p, min=max(lo) if lo else None, max=min(hi) if hi else None)
            if p.min is not None and p.max is not None and p.min > p.max:
                raise ParameterSpecError(f"parameter {name!r}: no value fits {p._show(p.min)}..{p._show(p.max)} "
                                         "(the kernelspec's bounds and KernelParameters.bounds)")
        elif p.type in ("enum", "string") and (p.type == "enum" or admin.get("choices") is not None):
            choices = [str(c) for c in (d.get("choices") or [])] if p.type == "enum" else []
            admin_choices = admin.get("choices")
            if admin_choices is not None:
                allowed = [str(c) for c in admin_choices]
                choices = [c for c in choices if c in allowed] if p.type == "enum" else allowed
            if not choices:
                raise ParameterSpecError(f"parameter {name!r}: no choices left (the kernelspec's choices and "
                                         "KernelParameters.bounds)")
            p = _replace(p, type="enum", choices=tuple(choices))
    except (ValueError, re.error) as exc:
        if isinstance(exc, ParameterSpecError):
            raise
        raise ParameterSpecError(f"parameter {name!r}: malformed bound or pattern ({exc})") from None
    return _replace(p, default=_effective_default(p, d.get("default")))


def _effective_default(p: Parameter, default: Any) -> Optional[str]:
    if default is None:
        return None
    try:
        if p.type in ("int", "memory"):  # moved inside the (possibly admin-tightened) bounds
            n = p._num(default)
            n = max(n, p.min) if p.min is not None else n
            n = min(n, p.max) if p.max is not None else n
            return p._show(n)
        if p.type == "enum" and str(default) not in p.choices:
            return p.choices[0]
        return p.parse(default if not isinstance(default, bool) else str(default))
    except ValueError:
        raise ParameterSpecError(f"parameter {p.name!r}: default {default!r} is not {p.allowed()}") from None


def _replace(p: Parameter, **changes: Any) -> Parameter:
    return replace(p, **changes)


@dataclass
class Chosen:
    """What the client's parameters (and the defaults) make of a launch."""

    conf: dict[str, str] = field(default_factory=dict)  # spark conf key -> value
    queue: Optional[str] = None  # --queue, when a parameter maps to it
    values: dict[str, str] = field(default_factory=dict)  # parameter name -> value


def choose(params: list[Parameter], env: Mapping[str, str]) -> tuple[Chosen, list[str]]:
    """Apply the client's ``env`` to ``params``: the choice, and one problem line per refused value."""
    by_env = {p.env: p for p in params}
    problems = []
    for name in sorted(env):
        if name not in by_env and (name.startswith(PARAM_PREFIX) or name in BUILTIN_ENVS):
            known = ", ".join(sorted(by_env)) or "none"
            problems.append(f"{name} is not a parameter of this kernelspec (its parameters: {known})")
    chosen = Chosen()
    for p in params:
        raw = env.get(p.env)
        if raw is None:
            value = p.default
        else:
            try:
                value = p.parse(raw)
            except ValueError as exc:
                problems.append(f"{p.env}={raw!r} is not allowed: {p.name} must be {exc}")
                continue
        if value is None:
            continue
        chosen.values[p.name] = value
        if p.maps_to == QUEUE:
            chosen.queue = value
        else:
            chosen.conf[p.maps_to] = value
    for lo, hi in ORDERED:
        if lo in chosen.conf and hi in chosen.conf and int(chosen.conf[lo]) > int(chosen.conf[hi]):
            problems.append(f"{lo}={chosen.conf[lo]} is more than {hi}={chosen.conf[hi]}")
    # spark-submit refuses zero executors unless dynamic allocation is on (then they are its initial number):
    # "Number of executors must be a positive number". Say so now, not after a spark-submit.
    if chosen.conf.get(EXECUTOR_INSTANCES) == "0" and chosen.conf.get(DYNAMIC_ALLOCATION) == "false":
        envs = {p.maps_to: p.env for p in params}
        problems.append(f"{envs[EXECUTOR_INSTANCES]}=0 ({EXECUTOR_INSTANCES}) needs {envs[DYNAMIC_ALLOCATION]}=true "
                        f"({DYNAMIC_ALLOCATION}): without dynamic allocation Spark refuses a kernel with no executors")
    return chosen, problems


class KernelParameters(LoggingConfigurable):
    """``c.KernelParameters.*``: the admin's caps on what kernelspecs let users choose."""

    bounds = Dict(
        config=True,
        help="""Admin bounds by target (a parameter's maps_to): {"spark.driver.memory": {"max": "8g"},
        "spark.executor.instances": {"min": 1, "max": 20}, "queue": {"choices": ["default", "adhoc"]}}.
        A kernelspec's own bounds can only be tighter. Default: none (the kernelspecs' bounds apply).""",
    )
    allowed_targets = List(
        Unicode(), default_value=sorted({str(d["maps_to"]) for d in BUILTINS.values()}), config=True,
        help="Targets (spark conf keys, or 'queue') a kernelspec parameter may map to. Default: the built-ins' "
        "(driver/executor memory and cores, executor instances, dynamic allocation enabled/min/max, queue).",
    )

    def parameters(self, metadata: Any) -> list[Parameter]:
        """The effective parameters a kernelspec (its ``metadata``) declares; ParameterSpecError if invalid."""
        params = [build_parameter(str(n), raw, self.bounds, set(self.allowed_targets))
                  for n, raw in _declared(metadata).items()]
        for attr in ("env", "maps_to"):
            seen = [getattr(p, attr) for p in params]
            dup = {v for v in seen if seen.count(v) > 1}
            if dup:
                raise ParameterSpecError(f"two parameters share {attr} {', '.join(sorted(dup))}")
        return params

    def resolve(self, spec_name: str, metadata: Any, env: Mapping[str, str]) -> Chosen:
        """Validate the client's ``env`` against the kernelspec: the choice, or a GatewayError (400/500)."""
        try:
            params = self.parameters(metadata)
        except ParameterSpecError as exc:
            raise GatewayError(500, f"Kernelspec '{spec_name}' declares invalid parameters: {exc}. Ask your "
                               "administrator to fix the kernelspec.", reason="Bad kernelspec") from None
        chosen, problems = choose(params, env)
        if problems:
            raise GatewayError(400, f"Kernelspec '{spec_name}' refused the kernel parameters:\n- "
                               + "\n- ".join(problems), reason="Bad kernel parameter")
        return chosen

    def expose(self, spec_name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A copy of a kernelspec's JSON with its effective parameters (defaults, bounds) for clients."""
        metadata = spec.get("metadata")
        try:
            declared = _declared(metadata)
        except ParameterSpecError:
            declared = {"?": None}
        if not declared:
            return spec
        out = copy.deepcopy(spec)
        section = out["metadata"].setdefault("yarn_gateway", {})
        try:
            section["parameters"] = {p.name: p.describe() for p in self.parameters(metadata)}
        except ParameterSpecError as exc:
            self.log.warning("Kernelspec %s: invalid parameters: %s", spec_name, exc)
            section["parameters"] = {}
            section["parameters_error"] = str(exc)
        return out


def parameters_of(registry: Any) -> KernelParameters:
    """The gateway's KernelParameters (held by the kernel registry); the defaults without one."""
    found = getattr(registry, "kernel_parameters", None)
    return found if isinstance(found, KernelParameters) else KernelParameters()
