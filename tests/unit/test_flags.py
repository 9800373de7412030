"""A job's config dataclass is the single source of its flags (speech2face.flags)."""

import dataclasses
import json
from dataclasses import dataclass

import pytest

from speech2face import flags
from speech2face.errors import InputError
from speech2face.flags import flag
from trainer.encoder.config import TrainConfig
from trainer.runtime.config import TrainingRun


@dataclass(kw_only=True)
class Example:
    data: str = flag(help="where the data is")
    epochs: int = flag(3, minimum=1, help="how many")
    rate: float = flag(0.5, minimum=0, maximum=1, help="a fraction")
    lr: float = flag(1e-3, above=0, help="a step size")
    mode: str = flag("a", choices=("a", "b"), help="which one")
    fast: bool = flag(False, help="a switch")
    careful: bool = flag(True, help="a switch that is on")
    limit: int | None = flag(None, help="optional")
    span: tuple[float, float] = flag((1.0, 2.0), metavar=("LOW", "HIGH"), help="two values")
    weights: tuple[float, ...] = flag((0.0, 0.5), help="a comma-separated list")
    timeout_s: float = flag(2.0, names=("--timeout",), help="seconds")
    secret: int | None = flag(None, hidden=True, help="test only")
    internal: dict = dataclasses.field(default_factory=dict)  # not a flag

    def problems(self) -> list[str]:
        return ["--fast and --limit do not mix"] if self.fast and self.limit else []


def test_fields_become_flags_with_their_types_defaults_and_help(capsys):
    config = flags.parse(Example, ["--data", "d"], "example")
    assert config == Example(data="d")
    parsed = flags.parse(
        Example,
        [
            "--data",
            "d",
            "--epochs",
            "5",
            "--mode",
            "b",
            "--fast",
            "--no-careful",
            "--span",
            "3",
            "4",
            "--weights",
            "1,2,3",
            "--timeout",
            "9",
            "--secret",
            "7",
        ],
        "example",
    )
    assert (parsed.epochs, parsed.mode, parsed.fast, parsed.careful) == (5, "b", True, False)
    assert (parsed.span, parsed.weights, parsed.timeout_s, parsed.secret) == ((3.0, 4.0), (1.0, 2.0, 3.0), 9.0, 7)
    with pytest.raises(SystemExit):
        flags.parse(Example, ["--help"], "example")
    shown = capsys.readouterr().out
    assert "how many (default 3)" in shown and "--span LOW HIGH" in shown and "--no-careful" in shown
    assert "--timeout TIMEOUT_S" in shown and "--secret" not in shown and "--internal" not in shown


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --data"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--rate", "2"], "--rate must be in [0, 1], got 2.0"),
        (["--lr", "0"], "--lr must be > 0, got 0.0"),
        (["--mode", "c"], "argument --mode: invalid choice: 'c'"),
        (["--fast", "--limit", "2"], "--fast and --limit do not mix"),
    ],
)
def test_a_bad_value_is_one_error_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        flags.parse(Example, ["--data", "d", *argv] if argv else argv, "example")
    assert exit_.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("example: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], error_lines


def test_configs_built_in_code_are_checked_the_same_way():
    assert flags.problems(Example(data="d", epochs=0, mode="z")) == [
        "--epochs must be >= 1, got 0",
        "--mode must be one of a, b, got 'z'",
    ]
    with pytest.raises(InputError, match="--lr must be > 0"):
        flags.validate(Example(data="d", lr=-1.0))


def test_to_argv_gives_the_config_back():
    config = Example(data="d", epochs=7, fast=True, careful=False, span=(0.5, 9.0), weights=(1.0,), timeout_s=3.0)
    argv = flags.to_argv(config)
    assert argv[:2] == ["--data", "d"] and "--rate" not in argv  # defaults are left out
    assert flags.parse(Example, argv, "example") == config


def test_adding_a_flag_to_a_job_is_one_field(capsys):
    """A field added to TrainConfig is a flag with help, a bound, and a key of config.json: nothing else to edit."""

    @dataclass(kw_only=True)
    class WithScratch(TrainConfig):
        scratch_weight: float = flag(0.25, minimum=0, help="a scratch flag")

    config = flags.parse(WithScratch, ["--data", "d", "--storage", "s", "--name", "n", "--scratch-weight", "2"], "t")
    assert json.loads(config.to_json())["scratch_weight"] == 2.0
    with pytest.raises(SystemExit):
        flags.parse(WithScratch, ["--help"], "t")
    assert "--scratch-weight SCRATCH_WEIGHT" in capsys.readouterr().out
    assert flags.problems(dataclasses.replace(config, scratch_weight=-1.0)) == [
        "--scratch-weight must be >= 0, got -1.0"
    ]


def test_encoder_and_decoder_runs_share_one_declaration_of_their_common_flags():
    from trainer.decoder.config import DecoderConfig

    shared = {f.name for f in dataclasses.fields(TrainingRun)}
    for job in (TrainConfig, DecoderConfig):
        fields = {f.name: f for f in dataclasses.fields(job)}
        for name in shared:
            assert flags.flag_of(fields[name]) is flags.flag_of(TrainingRun.__dataclass_fields__[name]), name
    assert DecoderConfig.__dataclass_fields__["epochs"].default == 100  # its own default, the same help
