"""Groups of flags that several stages share, composed into each stage's argument class.

A stage's class inherits the groups it uses (dataclass multiple inheritance) and adds
its own fields; ``TrlParser`` turns the result into exactly that stage's flags. Each
group validates its own fields in ``__post_init__`` and chains to the next group, so
a stage built from several groups runs every group's checks once.

    @dataclass
    class MimicArguments(DataStageArguments, ChunkedReading):   # groups it shares
        deid_style: str = field(default=..., metadata={"help": ...})  # its own flags

``flag_of`` re-declares an inherited field with the stage's own help or aliases (same
default); ``not_a_flag`` keeps a field at its default and off the command line, for a
stage that takes a group but not all of it (the judge's engine has no ``--model``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asclepius.errors import InputError
from asclepius.stage.folder import PushRequest
from asclepius.stage.policy import ALLOWED_ENDPOINTS_HELP


def _default_of(source: dataclasses.Field) -> dict[str, Any]:
    if source.default_factory is not dataclasses.MISSING:
        return {"default_factory": source.default_factory}
    return {"default": source.default}


def flag_of(cls: type, name: str, *, help: str | None = None, aliases: Sequence[str] = ()) -> Any:
    """Field ``name`` of dataclass ``cls`` again, with this stage's help text and extra flag names."""
    source = cls.__dataclass_fields__[name]
    metadata = dict(source.metadata)
    if help is not None:
        metadata["help"] = help
    if aliases:
        metadata["aliases"] = [*metadata.get("aliases", []), *aliases]
    return field(**_default_of(source), metadata=metadata)


def not_a_flag(cls: type, name: str) -> Any:
    """Field ``name`` of dataclass ``cls`` at its default, not a flag of this stage (nor a recipe key)."""
    return field(**_default_of(cls.__dataclass_fields__[name]), init=False)


def flag_names(cls: type) -> dict[str, str]:
    """Every command-line spelling of ``cls``'s flags (``--a_b``, ``--a-b``, aliases, ``--no_x``) -> field name."""
    names: dict[str, str] = {}
    for each in dataclasses.fields(cls):
        if not each.init:
            continue
        spellings = [f"--{each.name}", f"--{each.name.replace('_', '-')}", *each.metadata.get("aliases", [])]
        if each.default is True:  # HfArgumentParser adds --no_<flag> for a bool that defaults to true
            spellings.append(f"--no_{each.name}")
        names.update(dict.fromkeys(spellings, each.name))
    return names


def _type_name(action: argparse.Action) -> str:
    if action.choices:
        return "one of " + ", ".join(str(choice) for choice in action.choices)
    kind = getattr(action.type, "__name__", "")
    return {
        "int": "an integer",
        "float": "a number",
        "string_to_bool": "true or false",
        "str": "a value",
    }.get(kind, kind or "a value")


def flag_error(parser: Any, message: str, argv: list[str]) -> InputError:
    """One line naming the flag (as typed) and what it takes, from argparse's message."""
    match = re.match(r"argument (?P<flags>[^:]+): (?P<detail>.*)", message, re.S)
    if match is None:
        return InputError("command line", " ".join(message.split()))
    spellings = match["flags"].split("/")
    typed = {arg.split("=", 1)[0] for arg in argv}
    flag = next((spelling for spelling in spellings if spelling in typed), spellings[0])
    detail = " ".join(match["detail"].split())
    action = next((a for a in parser._actions if flag in a.option_strings), None)
    if "expected one argument" in detail or "expected at least one argument" in detail:
        return InputError(flag, f"needs a value ({_type_name(action)})" if action else "needs a value")
    value = re.search(r"(?:value: |choice: |got )'?(.*?)'?(?: but|\s\(|$)", detail)
    if action is None or value is None:
        return InputError(flag, detail)
    return InputError(flag, f"expected {_type_name(action)}, got {value.group(1)!r}")


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose mistakes are one line on stderr and exit 2, like the stage scripts' (no usage screen)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {flag_error(self, message, sys.argv[1:])}\n")


@dataclass
class Arguments:
    """Root of every group: ``__post_init__`` chains through all the groups of a stage."""

    def __post_init__(self) -> None:
        pass


@dataclass
class HubDatasetArguments(Arguments):
    """The push of a dataset folder."""

    push_to_hub: bool = field(default=False, metadata={"help": "Upload the finished folder to the Hub."})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub dataset repository, e.g. user/name."}
    )
    private: bool = field(
        default=False,
        metadata={
            "help": "Push to a private repository (required for restricted data, MIMIC included).",
            "aliases": ["--hub_private_repo"],  # the name TrainingArguments uses for models
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("--push_to_hub needs --hub_dataset_id")

    @property
    def push_request(self) -> PushRequest:
        """The push flags, as the stage folder takes them."""
        return PushRequest(self.push_to_hub, self.hub_dataset_id, self.private, repo_type="dataset")


@dataclass
class HubModelArguments(Arguments):
    """The push of a model folder, with ``TrainingArguments``' names."""

    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the finished model folder to the Hub."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub model repository, e.g. user/name."})
    hub_private_repo: bool = field(
        default=False, metadata={"help": "Push to a private repository.", "aliases": ["--private"]}
    )
    hub_token: str | None = field(
        default=None,
        metadata={
            "help": "Hub token for the push (default: huggingface_hub's own: HF_TOKEN, the login cache)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id")

    @property
    def push_request(self) -> PushRequest:
        return PushRequest(
            self.push_to_hub,
            self.hub_model_id,
            self.hub_private_repo,
            repo_type="model",
            token=self.hub_token,
        )


@dataclass
class SourceArguments(Arguments):
    """What the user declares about a raw input (a folder written by this project declares itself)."""

    source_license: str | None = field(
        default=None,
        metadata={
            "help": "Licence of a raw input (a file or Hub id with no card of this project), declared by you, e.g. "
            "cc-by-nc-sa-4.0 for PMC-Patients; later stages inherit it. An undeclared raw input is of unknown "
            "provenance and treated as restricted: never pushed publicly, sent to allowed endpoints only. "
            "Folders written by this project carry their own licence."
        },
    )
    source_restricted: bool = field(
        default=False,
        metadata={
            "help": "Declare the raw input credentialed (MIMIC or other PhysioNet data): restricted whatever "
            "its licence. A table with MIMIC's NOTEEVENTS columns is restricted in any case."
        },
    )


@dataclass
class AllowedEndpointsArguments(Arguments):
    """Where restricted notes may be sent, besides this machine and private addresses."""

    allowed_endpoints: list[str] | None = field(
        default=None, metadata={"help": ALLOWED_ENDPOINTS_HELP, "nargs": "+"}
    )
