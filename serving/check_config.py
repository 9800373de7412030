"""Check a Serve config file before ``serve run`` or ``serve deploy``: one line says what is wrong.

    python -m serving.check_config serve_config.yaml && serve run serve_config.yaml

Serve itself reports bad application arguments as a traceback in its controller's log and keeps retrying;
this applies Serve's own schema, then each Speech2Face application's argument model and the checks its
replicas would make (the model, gallery and decoder exist and were made by the same face embedder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pydantic
import yaml
from ray.serve.schema import ServeDeploySchema

from serving.config import BuildArgs, BuildArgsModel, check_inputs
from speech2face.errors import InputError

PROG = "python -m serving.check_config"
BUILDER = "serving.app:build"


def _one_line(error: pydantic.ValidationError) -> str:
    def problem(found: dict) -> str:
        where = ".".join(map(str, found["loc"]))
        got = "" if found["type"] == "missing" else f" (got {found['input']!r})"
        return f"{where}: {found['msg']}{got}"

    return "; ".join(problem(found) for found in error.errors())


def check(path: Path) -> list[str]:
    """The Speech2Face applications of the config file at ``path``, checked; InputError on the first problem."""
    try:
        text = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"{path} is not YAML: {str(error).splitlines()[0]}") from None
    try:
        deploy = ServeDeploySchema.model_validate(text)
    except pydantic.ValidationError as error:
        raise InputError(f"{path} is not a Serve config: {_one_line(error)}") from None
    checked = []
    for app in deploy.applications:
        if app.import_path != BUILDER:
            continue
        try:
            args = BuildArgsModel.model_validate(app.args or {})
        except pydantic.ValidationError as error:
            raise InputError(f"{path}: application {app.name!r}: args: {_one_line(error)}") from None
        try:
            check_inputs(BuildArgs(**args.model_dump()).split()[0])
        except (InputError, FileNotFoundError) as error:
            raise InputError(f"{path}: application {app.name!r}: {error}") from None
        checked.append(app.name)
    if not checked:
        raise InputError(f"{path} has no application with import_path {BUILDER}")
    return checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path, help="the Serve config file (serve_config.yaml)")
    path = parser.parse_args(argv).config
    if not path.is_file():
        parser.error(f"{path} is not a file")
    try:
        names = check(path)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{path}: application(s) {', '.join(names)} OK: `serve run {path}` or `serve deploy {path}` starts them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
