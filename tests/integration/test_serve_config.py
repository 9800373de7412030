"""serve_config.yaml and its check: Serve's own schema, the application's pydantic arguments, one-line errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from serving import check_config
from serving.config import BuildArgs, BuildArgsModel
from tests.support.cli import ROOT


def _config_with(tmp_path, **args) -> tuple:
    """The repository's serve_config.yaml with these application arguments (None drops one)."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    merged = {name: value for name, value in (config["applications"][0]["args"] | args).items() if value is not None}
    config["applications"][0]["args"] = merged
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_argument_model_is_the_flags(tiny_model):
    fields = BuildArgsModel.model_fields
    assert set(fields) == {f.name for f in dataclasses.fields(BuildArgs)}
    for field in dataclasses.fields(BuildArgs):
        assert fields[field.name].is_required() == (field.default is dataclasses.MISSING), field.name
    args = BuildArgsModel.model_validate({"model": str(tiny_model), "gallery": "g", "top": "3", "decoder": None})
    assert (args.top, args.max_batch_size, args.num_replicas) == (3, None, 1)  # strings typed, as `serve run` sends


def test_the_repository_config_with_real_paths_checks_out(tiny_model, small_dataset, tmp_path, capsys):
    path = _config_with(tmp_path, model=str(tiny_model), gallery=str(small_dataset), decoder=None)
    assert check_config.main([str(path)]) == 0
    assert "application(s) speech2face OK" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"top": 0}, "args: top: Input should be greater than or equal to 1 (got 0)"),
        ({"top": "many"}, "args: top: Input should be a valid integer"),
        ({"topp": 3}, "args: topp: Extra inputs are not permitted"),
        ({"model": None}, "args: model: Field required"),
        ({"gallery": "nowhere"}, "nowhere/manifest.json not found"),
    ],
)
def test_bad_arguments_are_one_error_line(tiny_model, small_dataset, tmp_path, capsys, args, says):
    good = {"model": str(tiny_model), "gallery": str(small_dataset), "decoder": None}
    path = _config_with(tmp_path, **(good | args))
    assert check_config.main([str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and says in error, error
    assert "application 'speech2face'" in error


def test_a_file_that_is_not_a_serve_config_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "wrong.yaml"
    path.write_text("applications:\n  - name: x\n    import_paht: serving.app:build\n")
    assert check_config.main([str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is not a Serve config" in error, error
