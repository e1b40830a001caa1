"""Name → object look-ups for the command line: noises, certificate methods and trainers.

Nothing here is hard-coded per noise. Noises are discovered from :mod:`art_smoothing.noise` (every
exported concrete :class:`~art_smoothing.noise.Noise` subclass, under its ``name`` attribute and a few
spellings of its class name) and their parameters from ``inspect.signature`` of the constructor,
with types taken from the annotations or the defaults; their certificates from
:meth:`~art_smoothing.noise.Noise.certificate_specs`. Trainers come from
``art_smoothing.training.TRAINERS``. A new noise or trainer is therefore reachable by name as soon as
its package exports it.

Every user mistake raises :class:`ValueError` with a one-line message saying what to change.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NoiseEntry",
    "ParamSpec",
    "TrainerEntry",
    "build_noise",
    "build_trainer",
    "convert_value",
    "noise_from_record",
    "noise_record",
    "noise_registry",
    "param_specs",
    "parse_assignments",
    "parse_noise_spec",
    "resolve_methods",
    "resolve_noise",
    "resolve_trainer",
    "trainer_registry",
]

_MISSING = inspect.Parameter.empty
#: constructor parameters of trainers the CLI fills itself
_TRAINER_RESERVED = {"classifier", "estimator", "verbose", "self"}


@dataclass(frozen=True)
class ParamSpec:
    """One constructor parameter: its name, the type values are converted to, and its default."""

    name: str
    kind: str  # "float", "int", "bool", "str", "pair" (two floats), "any"
    default: Any = _MISSING
    optional: bool = False  # accepts None ("none" on the command line)

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def describe(self) -> str:
        if self.required:
            return f"{self.name} ({self.kind}, required)"
        return f"{self.name}={self.default!r}"


@dataclass(frozen=True)
class NoiseEntry:
    name: str
    cls: type
    params: tuple[ParamSpec, ...]
    aliases: tuple[str, ...]

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def norm(self) -> float:
        return float(self.cls.norm)

    def methods(self) -> list[str]:
        return sorted(self.cls.certificate_specs())

    def box_methods(self) -> list[str]:
        return sorted(name for name, spec in self.cls.certificate_specs().items() if spec.box)

    def usage(self) -> str:
        req = [p for p in self.params if p.required]
        example = " ".join(f"--{p.name.replace('_', '-')} <{p.kind}>" for p in req)
        return f"--noise {self.name} {example}".strip()


@dataclass(frozen=True)
class TrainerEntry:
    name: str
    cls: type
    params: tuple[ParamSpec, ...]


# ---------------------------------------------------------------------------------------------- types
def _kind_from_annotation(annotation) -> tuple[str | None, bool]:
    """(kind, optional) from a resolved annotation; kind None when it says nothing usable."""
    if annotation is _MISSING or annotation is None:
        return None, False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        kinds = {_kind_from_annotation(a)[0] for a in args}
        kinds.discard(None)
        if kinds == {"int", "float"}:
            return "float", optional
        return (kinds.pop() if len(kinds) == 1 else None), optional
    if origin is tuple or annotation is tuple:
        return "pair", False
    for typ, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if annotation is typ:
            return kind, False
    return None, False


def _kind_from_default(default) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (tuple, list)) and len(default) == 2:
        return "pair"
    return "any"


def _signature(fn) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: use the defaults only
        return inspect.signature(fn)


def param_specs(cls) -> tuple[ParamSpec, ...]:
    """Constructor parameters of ``cls``; a ``**kwargs`` passed on to a base class is followed into
    the base class's ``__init__`` (e.g. a noise that forwards its keyword options)."""
    specs: list[ParamSpec] = []
    seen: set[str] = set()
    params = list(_signature(cls).parameters.values())
    mro = [k for k in cls.__mro__[1:] if "__init__" in vars(k) and k is not object]
    while True:
        forwards = False
        for p in params:
            if p.kind == p.VAR_KEYWORD:
                forwards = True
                continue
            if p.kind == p.VAR_POSITIONAL or p.name in _TRAINER_RESERVED or p.name in seen:
                continue
            seen.add(p.name)
            annotation = p.annotation if not isinstance(p.annotation, str) else _MISSING
            kind, optional = _kind_from_annotation(annotation)
            if kind is None:
                kind = _kind_from_default(p.default) if p.default is not _MISSING else "float"
            specs.append(ParamSpec(p.name, kind, p.default, optional or p.default is None))
        if not forwards or not mro:
            break
        params = list(_signature(mro.pop(0).__init__).parameters.values())[1:]  # drop self
    return tuple(specs)


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def convert_value(spec: ParamSpec, raw, owner: str = "") -> Any:
    """Convert a command-line string (or an already typed value, e.g. from a JSON rerun) to the
    parameter's type; ``ValueError`` with a one-line message otherwise."""
    where = f" of {owner}" if owner else ""
    if raw is None:
        if spec.optional:
            return None
        raise ValueError(f"Parameter {spec.name}{where} needs a value.")
    if isinstance(raw, str) and raw.strip().lower() in ("none", "null") and spec.optional:
        return None
    text = raw.strip() if isinstance(raw, str) else raw
    try:
        if spec.kind == "float":
            value = float(text)
            if math.isnan(value):
                raise ValueError
            return value
        if spec.kind == "int":
            if isinstance(text, float) and text.is_integer():
                return int(text)
            if isinstance(text, str) and re.fullmatch(r"[+-]?\d+(\.0*)?(e\+?\d+)?", text.lower()):
                return int(float(text)) if ("." in text or "e" in text.lower()) else int(text)
            if isinstance(text, int) and not isinstance(text, bool):
                return text
            raise ValueError
        if spec.kind == "bool":
            if isinstance(text, bool):
                return text
            key = str(text).lower()
            if key in _TRUE:
                return True
            if key in _FALSE:
                return False
            raise ValueError
        if spec.kind == "pair":
            if isinstance(text, (list, tuple)):
                parts = list(text)
            else:
                parts = [s for s in re.split(r"[,:\s]+", str(text).strip("()[] ")) if s]
            if len(parts) != 2:
                raise ValueError
            return tuple(float(v) for v in parts)
        if spec.kind == "str":
            return str(text)
    except (TypeError, ValueError):
        expected = {"float": "a number", "int": "an integer", "bool": "true or false",
                    "pair": "two numbers 'lo,hi'"}.get(spec.kind, "a value")
        raise ValueError(f"Parameter {spec.name}{where} expects {expected}, got {raw!r}.") from None
    # "any": numbers where they parse, else the string
    if isinstance(text, str):
        for conv in (int, float):
            try:
                return conv(text)
            except ValueError:
                pass
    return text


# ---------------------------------------------------------------------------------------------- noises
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def noise_registry() -> dict[str, NoiseEntry]:
    """Every concrete noise exported by :mod:`art_smoothing.noise`, by its ``name``."""
    import art_smoothing.noise as noise_pkg
    from art_smoothing.noise.base import Noise

    entries: dict[str, NoiseEntry] = {}
    for export in getattr(noise_pkg, "__all__", dir(noise_pkg)):
        cls = getattr(noise_pkg, export, None)
        if not (inspect.isclass(cls) and issubclass(cls, Noise) and cls is not Noise):
            continue
        if inspect.isabstract(cls) or cls.__name__.startswith("_") or not cls.certificate_specs():
            continue  # a partial base class: nothing to certify with
        name = getattr(cls, "name", None)
        if not name or name == Noise.name:
            name = _snake(cls.__name__.removesuffix("Noise"))
        snake = _snake(cls.__name__)
        aliases = {name, snake, snake.removesuffix("_noise"), cls.__name__.lower(),
                   cls.__name__.lower().removesuffix("noise")}
        entries[name] = NoiseEntry(name, cls, param_specs(cls), tuple(sorted(aliases)))
    return entries


def resolve_noise(name: str) -> NoiseEntry:
    """The registry entry for a noise name (case, dashes and a ``Noise`` suffix do not matter)."""
    registry = noise_registry()
    key = _normalise(name)
    for entry in registry.values():
        if key in entry.aliases:
            return entry
    raise ValueError(f"Unknown noise {name!r}: choose one of {', '.join(sorted(registry))} "
                     "(art-smoothing list shows their parameters).")


_ASSIGN_SPLIT = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_\-]*\s*=)")


def parse_assignments(text: str, what: str = "parameters") -> dict[str, str]:
    """``"a=1,b=0,1"`` → ``{"a": "1", "b": "0,1"}`` (a comma starts a new pair only before ``name=``)."""
    out: dict[str, str] = {}
    text = text.strip()
    if not text:
        return out
    for part in _ASSIGN_SPLIT.split(text):
        if "=" not in part:
            raise ValueError(f"Cannot read {what} {part!r}: write name=value (several as a=1,b=2).")
        key, value = part.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key.isidentifier():
            raise ValueError(f"Bad parameter name {key!r} in {what}: write name=value.")
        out[key] = value.strip()
    return out


def parse_noise_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"laplace"`` or ``"laplace:scale=0.5"`` (also ``"laplace(scale=0.5)"``) → name and raw parameters."""
    spec = spec.strip()
    m = re.fullmatch(r"([^:()]+)\((.*)\)", spec)
    if m:
        return m.group(1).strip(), parse_assignments(m.group(2), f"noise {spec!r}")
    name, _, rest = spec.partition(":")
    return name.strip(), parse_assignments(rest, f"noise {spec!r}")


def build_noise(name: str, explicit: dict[str, Any] | None = None, shared: dict[str, Any] | None = None,
                context: dict[str, Any] | None = None):
    """Instantiate a noise by name.

    :param explicit: parameters meant for this noise (from ``name:param=value``); an unknown one is an error.
    :param shared: parameters given as plain options (``--scale 0.5``); only those the noise takes are used.
    :param context: defaults the caller knows (e.g. ``clip_values`` of the data), used for parameters
        the user left unset.
    :return: ``(noise, params)`` with the converted parameters the user set (for the record).
    """
    entry = resolve_noise(name)
    explicit = dict(explicit or {})
    shared = {k: v for k, v in (shared or {}).items() if v is not None}
    context = dict(context or {})
    names = entry.param_names
    unknown = sorted(set(explicit) - set(names))
    if unknown:
        raise ValueError(f"Noise {entry.name!r} has no parameter {unknown[0]!r}; its parameters are "
                         f"{', '.join(p.describe() for p in entry.params) or 'none'}.")
    kwargs: dict[str, Any] = {}
    for spec in entry.params:
        if spec.name in explicit and spec.name in shared and (
                convert_value(spec, explicit[spec.name], entry.name) != convert_value(spec, shared[spec.name], entry.name)):
            opt = f"--{spec.name.replace('_', '-')}"
            raise ValueError(f"Conflicting values for {spec.name} of noise {entry.name!r}: {entry.name}:{spec.name}="
                             f"{explicit[spec.name]} and {opt} {shared[spec.name]}; give it once.")
        if spec.name in explicit:
            kwargs[spec.name] = convert_value(spec, explicit[spec.name], entry.name)
        elif spec.name in shared:
            kwargs[spec.name] = convert_value(spec, shared[spec.name], entry.name)
        elif spec.name in context and context[spec.name] is not None:
            kwargs[spec.name] = convert_value(spec, context[spec.name], entry.name)
        elif spec.required:
            opt = f"--{spec.name.replace('_', '-')}"
            raise ValueError(f"Noise {entry.name!r} needs its parameter {spec.name}: pass {opt} <{spec.kind}> "
                             f"(or --noise {entry.name}:{spec.name}=<value>).")
    try:
        noise = entry.cls(**kwargs)
    except TypeError as err:  # a parameter the signature hid from us
        raise ValueError(f"Cannot build noise {entry.name!r} from {kwargs}: {err}.") from None
    except ValueError as err:
        raise ValueError(f"Noise {entry.name!r}: {err}") from None
    return noise, kwargs


def noise_record(noise) -> dict[str, Any]:
    """JSON-ready description that :func:`noise_from_record` turns back into an equal noise."""
    params = {}
    for key, value in noise.params().items():
        params[key] = list(value) if isinstance(value, tuple) else value
    return {"name": resolve_noise(type(noise).__name__).name, "class": type(noise).__name__, "params": params}


def noise_from_record(record: dict[str, Any]):
    entry = resolve_noise(record["name"])
    params = dict(record.get("params", {}))
    accepted = set(entry.param_names)
    noise, _ = build_noise(entry.name, {k: v for k, v in params.items() if k in accepted})
    return noise


# ---------------------------------------------------------------------------------------------- methods
def resolve_methods(noise, method: str | None, norm: float) -> tuple[str | None, bool | None]:
    """Map a CLI ``--method`` to ``(method for certify_detailed / certified_radius, box)``.

    ``box`` is ``None`` when the caller's box option decides, ``True`` when the box is required and
    ``False`` when it must be off:

    * ``best`` (or None): the largest sound certificate → ``(None, None)``;
    * ``box``: the largest with the box-constrained certificates switched on → ``(None, True)``;
      an error when the noise has none;
    * ``plain``: the largest certificate that does not use the box → ``(None, False)``;
    * a certificate name of the noise → ``(name, True)`` if it is box-constrained, else ``(name, None)``.
    """
    specs = type(noise).certificate_specs()
    has_box = type(noise).has_box_certificates()
    available = noise.certificate_methods(norm)  # also validates the norm
    choices = ", ".join(["best", "plain"] + (["box"] if has_box else []) + available)
    key = "best" if method is None else _normalise(method)
    if key == "best":
        return None, None
    if key == "plain":
        return None, False
    if key == "box":
        if not has_box:
            raise ValueError(f"{type(noise).__name__} has no box-constrained certificate; choose --method from "
                             f"{choices}.")
        return None, True
    if key not in specs:
        raise ValueError(f"Unknown certificate method {method!r} for {type(noise).__name__}; choose --method from "
                         f"{choices}.")
    return key, (True if specs[key].box else None)


# ---------------------------------------------------------------------------------------------- trainers
def trainer_registry() -> dict[str, TrainerEntry]:
    """Every trainer of ``art_smoothing.training.TRAINERS`` under its key there (noise augmentation is
    ``augment``). One entry per class: a class listed under several keys keeps the first."""
    from art_smoothing.training import TRAINERS

    found: dict[str, type] = {}
    for name, cls in TRAINERS.items():
        if cls not in found.values():
            found[_normalise(str(name))] = cls
    return {name: TrainerEntry(name, cls, param_specs(cls)) for name, cls in found.items()}


_TRAINER_ALIASES = ("augment", "augmentation", "noise_augmentation", "gaussian_augmentation", "cohen")


def resolve_trainer(name: str) -> TrainerEntry:
    """The trainer registered under ``name`` (or its class name in snake case, with or without
    ``_trainer``); ``augmentation``/``noise_augmentation`` also name noise augmentation."""
    from art_smoothing import training

    registry = trainer_registry()
    key = _normalise(name)
    for entry in registry.values():
        snake = _snake(entry.cls.__name__)
        if key in (entry.name, snake, snake.removesuffix("_trainer")):
            return entry
        if key in _TRAINER_ALIASES and entry.cls is training.NoiseAugmentationTrainer:
            return entry
    raise ValueError(f"Unknown trainer {name!r}: choose one of {', '.join(sorted(registry))}.")


def build_trainer(name: str, classifier, raw_params: dict[str, Any] | None = None, verbose: bool = False):
    """Instantiate a trainer by name around a :class:`~art_smoothing.SmoothedClassifier`.

    :return: ``(trainer, params)`` with the converted parameters the user set.
    """
    entry = resolve_trainer(name)
    raw_params = dict(raw_params or {})
    names = [p.name for p in entry.params]
    unknown = sorted(set(raw_params) - set(names))
    if unknown:
        raise ValueError(f"Trainer {entry.name!r} has no parameter {unknown[0]!r}; its parameters are "
                         f"{', '.join(p.describe() for p in entry.params) or 'none'}.")
    kwargs = {}
    for spec in entry.params:
        if spec.name in raw_params:
            kwargs[spec.name] = convert_value(spec, raw_params[spec.name], entry.name)
        elif spec.required:
            raise ValueError(f"Trainer {entry.name!r} needs its parameter {spec.name}: pass "
                             f"--trainer-param {spec.name}=<value>.")
    sig = inspect.signature(entry.cls)
    extra = {"verbose": verbose} if "verbose" in sig.parameters else {}
    try:
        trainer = entry.cls(classifier, **kwargs, **extra)
    except TypeError as err:
        raise ValueError(f"Cannot build trainer {entry.name!r} from {kwargs}: {err}.") from None
    return trainer, kwargs
