"""Command-line parameters built from the option groups of :mod:`avmix.options`.

:func:`command` registers a command whose own parameters (inputs, output, ...) are written as usual and
whose options come from the groups' fields that name this command. The function receives them as
``opts``, an :class:`avmix.options.Options` with each group built from what was given. So every option
is declared once, in :mod:`avmix.options`, and every command that takes it shares that declaration.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from enum import Enum
from typing import Any, Callable, List, Optional

import typer
from typing_extensions import Annotated

from avmix.options import AUDIO_COMMANDS, GROUPS, MODEL, TEXT, VIDEO, Options, flag_of

# field type (as written in avmix/options.py) -> command-line type
_CLI_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "int | None": Optional[int],
              "float | None": Optional[float], "str | None": Optional[str], "list[float]": Optional[List[float]],
              "list[str]": Optional[List[str]], "tuple[int, int]": str}


def _cli_type(f: dataclasses.Field, choices: type[Enum] | None) -> Any:
    if choices is not None:
        return choices
    return _CLI_TYPES[str(f.type)]


def _cli_default(f: dataclasses.Field, choices: type[Enum] | None) -> Any:
    flag = flag_of(f)
    if flag.cli_default is not None:
        return flag.cli_default
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if choices is not None and value is not None:
        return choices(value)
    return None if value == [] else value


def _help(flag, command: str) -> str:
    # generate takes the options of every mode: say which mode an option is for
    modes = [c for c in flag.commands if c in AUDIO_COMMANDS]
    if command == "generate" and len(modes) == 1 and flag.help:
        return f"{modes[0]}: {flag.help}"
    return flag.help


def parameters(command: str) -> list[inspect.Parameter]:
    """The Typer parameters of every option ``command`` takes, in declaration order."""
    params = []
    for group in GROUPS.values():
        for f in dataclasses.fields(group):
            flag = flag_of(f)
            if flag is None or command not in flag.commands:
                continue
            # the audio commands make no video: their --seed and --device are the text tracks'
            panel = TEXT if command in AUDIO_COMMANDS and flag.panel in (VIDEO, MODEL) else flag.panel
            extra: dict[str, Any] = {"rich_help_panel": panel, "help": _help(flag, command) or None}
            if flag.metavar:
                extra["metavar"] = flag.metavar
            if flag.choices is not None:
                extra["case_sensitive"] = False
            if flag.min is not None:
                extra["min"] = flag.min
            if flag.max is not None:
                extra["max"] = flag.max
            default = _cli_default(f, flag.choices)
            if default is None:
                extra["show_default"] = False
            option = typer.Option(*flag.decls, **extra)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[_cli_type(f, flag.choices), option]))
    return params


def options_from(values: dict[str, Any], **fixed: Any) -> Options:
    """An :class:`Options` from the parsed option values (enums to their values, unset lists empty);
    ``fixed`` sets options the command implies (``mode`` for mix, concat and overlay)."""
    flat = {}
    for name, value in values.items():
        if isinstance(value, Enum):
            value = value.value
        elif value is None and name in ("labels", "gains", "images"):
            value = []
        flat[name] = value
    return Options.of(**flat, **fixed)


def command(app: typer.Typer, name: str, **fixed: Any) -> Callable:
    """Register ``fn`` as command ``name``; its keyword ``opts`` receives the options from the groups."""

    def register(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "opts"]
        own_names = {p.name for p in own}
        group_params = parameters(name)

        @functools.wraps(fn)
        def run(**kwargs: Any) -> Any:
            mine = {k: kwargs.pop(k) for k in list(kwargs) if k in own_names}
            return fn(**mine, opts=options_from(kwargs, **fixed))

        run.__signature__ = inspect.Signature(own + group_params)  # what Typer reads
        run.__annotations__ = {}
        del run.__wrapped__  # Typer must see the signature above, not fn's
        app.command(name)(run)
        return fn

    return register
