"""A job's config is one dataclass; its command-line flags are built from the fields, so each is declared once.

    @dataclass(kw_only=True)
    class EvaluateConfig:
        data: str = flag(help="preprocess output (local dir or s3://)")      # no default: a required flag
        split: str = flag("test", help="split to evaluate", choices=("test", "val", "train"))
        batch_size: int = flag(16, help="clips per forward pass", minimum=1)

    config = parse(EvaluateConfig, argv, prog="python -m trainer.evaluate", description=__doc__)

A field's flag is ``--`` and its name with dashes; the field gives the type (``int``, ``float``, ``str``,
``bool``: a switch, ``X | None``, ``tuple[float, float]``: two values, ``tuple[float, ...]``: a comma-separated
list), the default, the help, the choices and the bounds. A field without ``flag`` is no flag (a setting the
job fills in itself). Jobs record ``dataclasses.asdict(config)`` (config.json, the manifest), so adding a field
adds the flag, its help, its check and its record in one edit.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from speech2face import storage
from speech2face.errors import InputError

_META = "s2f_flag"


@dataclasses.dataclass(frozen=True)
class Flag:
    help: str
    choices: tuple | None = None
    minimum: float | None = None  # inclusive bounds ...
    maximum: float | None = None
    above: float | None = None  # ... and exclusive ones
    names: tuple[str, ...] = ()  # instead of --<field-name>: the flag, then its aliases
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # text -> value, for types this module does not know
    const: Any = None  # the value of the flag given without one (nargs="?")
    hidden: bool = False  # not in --help (test-only switches)


def flag(default: Any = dataclasses.MISSING, *, help: str, **options) -> Any:  # noqa: A002 - argparse's word
    """A dataclass field that is also a command-line flag; without ``default`` the flag is required."""
    return dataclasses.field(default=default, metadata={_META: Flag(help=help, **options)})


def field_of(cls: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """``cls``'s field ``name`` (its flag, help and bounds) for another config, with its default or another."""
    field = cls.__dataclass_fields__[name]
    return dataclasses.field(
        default=field.default if default is dataclasses.MISSING else default, metadata=field.metadata
    )


def flag_of(field: dataclasses.Field) -> Flag | None:
    return field.metadata.get(_META)


def flag_name(field: dataclasses.Field) -> str:
    spec = flag_of(field)
    return spec.names[0] if spec and spec.names else "--" + field.name.replace("_", "-")


def _inner(annotation) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether None is allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return annotation, False


def _converter(annotation) -> tuple[Callable[[str], Any], int | None]:
    """(text -> value, how many values the flag takes: None for one)."""
    kind, _ = _inner(annotation)
    if typing.get_origin(kind) is tuple:
        item, *rest = typing.get_args(kind)
        if rest == [Ellipsis]:
            return (lambda text: tuple(item(v) for v in text.split(",") if v.strip())), None
        return item, 1 + len(rest)
    if kind in (int, float, str):
        return kind, None
    raise TypeError(f"no command-line type for {annotation!r}: give the flag a parse= function")


def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def build_parser(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of ``cls``'s flags, in field order."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        spec = flag_of(field)
        if spec is None:
            continue
        names = spec.names or (flag_name(field),)
        options: dict[str, Any] = {"dest": field.name}
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if hints[field.name] is bool:
            options["action"] = argparse.BooleanOptionalAction if field.default else "store_true"
        else:
            convert, nargs = _converter(hints[field.name]) if spec.parse is None else (spec.parse, None)
            options.update(type=convert, nargs=nargs, metavar=spec.metavar, choices=spec.choices)
            if spec.const is not None:
                options.update(nargs="?", const=spec.const)
        if required:
            options["required"] = True
        else:
            options["default"] = field.default
        help_text = spec.help
        if not required and field.default not in (None, False, ()) and "(default" not in help_text:
            shown = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
            help_text += f" (default {shown})"
        options["help"] = argparse.SUPPRESS if spec.hidden else help_text
        parser.add_argument(*names, **{k: v for k, v in options.items() if v is not None})
    return parser


def _bound_problems(field: dataclasses.Field, value: Any) -> list[str]:
    spec = flag_of(field)
    if spec is None or value is None:
        return []
    name = flag_name(field)
    if spec.choices is not None and value not in spec.choices:
        return [f"{name} must be one of {', '.join(map(str, spec.choices))}, got {value!r}"]
    values = value if isinstance(value, tuple) else (value,)
    if spec.minimum is not None and spec.maximum is not None:
        if any(not spec.minimum <= v <= spec.maximum for v in values):
            return [f"{name} must be in [{spec.minimum:g}, {spec.maximum:g}], got {value}"]
    problems = []
    for bound, fails, words in (
        (spec.minimum, lambda v, b: v < b, ">="),
        (spec.maximum, lambda v, b: v > b, "<="),
        (spec.above, lambda v, b: v <= b, ">"),
    ):
        if bound is not None and any(fails(v, bound) for v in values):
            problems.append(f"{name} must be {words} {bound:g}, got {value}")
    return problems


def problems(config: Any) -> list[str]:
    """What is wrong with ``config``: each field against its choices and bounds, then the class's own
    cross-field ``problems()`` (a job builds configs without a command line too: the sweep, tests)."""
    found = [p for f in dataclasses.fields(config) for p in _bound_problems(f, getattr(config, f.name))]
    own = getattr(config, "problems", None)
    return found + (own() if own else [])


def validate(config: Any) -> None:
    """InputError listing every problem of ``config``, or nothing."""
    if found := problems(config):
        raise InputError("; ".join(found))


def parse(cls: type, argv: list[str] | None, prog: str, description: str | None = None):
    """``cls`` from the command line; a bad value is argparse's usage line and one error line, exit 2."""
    parser = build_parser(cls, prog, description)
    values = vars(parser.parse_args(argv))
    hints = _hints(cls)
    for name, value in values.items():  # two-value flags arrive as lists
        if isinstance(value, list) and typing.get_origin(_inner(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    config = cls(**values)
    if found := problems(config):
        parser.error("; ".join(found))
    return config


def _text(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def to_argv(config: Any) -> list[str]:
    """The command-line flags that give ``config`` back: required ones and every value that is not the default."""
    argv: list[str] = []
    for field in dataclasses.fields(config):
        spec, value = flag_of(field), getattr(config, field.name)
        if spec is None or spec.hidden or value == field.default:
            continue
        name = flag_name(field)
        if isinstance(value, bool):
            argv.append(name if value else f"--no-{name[2:]}")
        elif isinstance(value, tuple):
            count = _converter(_hints(type(config))[field.name])[1]
            argv += [name, *map(_text, value)] if count else [name, ",".join(map(_text, value))]
        else:
            argv += [name, _text(value)]
    return argv


def run_command(action: Callable[[Any], Any], config: Any) -> int:
    """``action(config)`` for a command's main: its exit code if it returns an int (else 0); bad input is one
    line on stderr and exit code 2, not a traceback."""
    try:
        code = action(config)
    except InputError as error:
        print(f"error: {error.prefix}{error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, storage.NotWritableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
