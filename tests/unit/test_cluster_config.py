"""cluster.yaml passes Ray's own validation and keeps its promises; docker/Dockerfile installs only pinned files.

Ray's autoscaler code checks the config offline (no AWS call): `prepare_config` fills in the AWS
defaults the way `ray up` does, then `validate_config` applies Ray's JSON schema. The Docker image
cannot be built here, so its Dockerfile is parsed and checked against the repository's pins.
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from ray.autoscaler._private.util import prepare_config, validate_config

import speech2face

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
PINNED_FILES = ("requirements.txt", "requirements-nodeps.txt")


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(cluster) -> dict:
    """The config as `ray up` sees it: merged with Ray's AWS defaults, then schema-validated."""
    config = prepare_config(copy.deepcopy(cluster))
    validate_config(config)
    return config


def _node_types(config: dict) -> dict:
    return config["available_node_types"]


def _worker_types(config: dict) -> dict:
    return {name: spec for name, spec in _node_types(config).items() if name != config["head_node_type"]}


def _is_spot(spec: dict) -> bool:
    """AWS launches the type as spot: node_config goes to EC2's RunInstances as it is (Ray's AWS node provider
    calls `create_instances(**node_config)`), and there InstanceMarketOptions.MarketType picks the market."""
    return spec["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"


def _env_options(config: dict) -> dict:
    """KEY=VALUE of every `--env`/`-e` in docker.run_options."""
    words = shlex.split(" ".join(config["docker"].get("run_options", [])))
    pairs = [words[i + 1] for i, word in enumerate(words[:-1]) if word in ("--env", "-e")]
    pairs += [word.split("=", 1)[1] for word in words if word.startswith("--env=")]
    return dict(pair.split("=", 1) for pair in pairs)


# ---- cluster.yaml ----------------------------------------------------------------------------


def test_ray_accepts_the_cluster_config(prepared):
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_every_node_type_declares_integer_resources_and_a_node_config(cluster):
    for name, spec in _node_types(cluster).items():
        assert isinstance(spec.get("node_config"), dict) and spec["node_config"].get("InstanceType"), name
        resources = spec.get("resources")
        assert isinstance(resources, dict) and resources, f"{name}: declare resources (the autoscaler plans with them)"
        for key, value in resources.items():
            assert type(value) is int and value >= 0, f"{name}: resource {key}={value!r} must be a non-negative int"


def test_head_has_no_gpu_so_gpu_actors_land_on_workers(cluster):
    head = _node_types(cluster)[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert not head["node_config"]["InstanceType"].startswith(("g", "p")), "the head should be a CPU instance"


def test_gpu_worker_type_has_one_gpu_and_scales_from_zero(prepared):
    gpu_types = {name: spec for name, spec in _worker_types(prepared).items() if spec["resources"].get("GPU", 0) > 0}
    assert gpu_types, "cluster.yaml needs a GPU worker type"
    for name, spec in gpu_types.items():
        assert spec["resources"]["GPU"] == 1, name
        assert spec["node_config"]["InstanceType"].startswith(("g", "p")), f"{name} must be a GPU instance type"
        assert spec["min_workers"] == 0, f"{name}: idle GPU nodes cost money; start them on demand"
        assert spec["max_workers"] >= 1, name


def test_global_worker_cap_lets_every_type_reach_its_own_max(prepared):
    workers = _worker_types(prepared)
    assert all(spec["min_workers"] == 0 for spec in workers.values())
    assert prepared["max_workers"] >= sum(spec["max_workers"] for spec in workers.values())


def test_spot_worker_types_pass_rays_validation_beside_an_on_demand_twin(prepared):
    """Each spot type, as `ray up` sees it, has an on-demand twin: the same instance and resources, so a job runs
    the same on either, and a user turns the spot one on or off with its max_workers alone."""
    workers = _worker_types(prepared)
    spot = {name: spec for name, spec in workers.items() if _is_spot(spec)}
    on_demand = {name: spec for name, spec in workers.items() if not _is_spot(spec)}
    assert any(spec["resources"].get("GPU") for spec in spot.values()), "a spot GPU type (training)"
    assert any(not spec["resources"].get("GPU") for spec in spot.values()), "a spot CPU type (preprocessing)"
    for name, spec in spot.items():
        assert spec["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}, name  # no MaxPrice: on-demand
        twin = on_demand.get(name.removesuffix(".spot"))
        assert twin is not None, f"{name} needs its on-demand twin {name.removesuffix('.spot')}"
        assert twin["resources"] == spec["resources"], name
        assert twin["node_config"]["InstanceType"] == spec["node_config"]["InstanceType"], name
        assert {k: v for k, v in spec["node_config"].items() if k != "InstanceMarketOptions"} == twin["node_config"]
        assert spec["min_workers"] == 0 and spec["max_workers"] == twin["max_workers"], name


def test_the_head_is_on_demand(prepared):
    """The head holds Ray's control plane and every job's driver: reclaiming it would end every running job."""
    head = _node_types(prepared)[prepared["head_node_type"]]
    assert not _is_spot(head) and "InstanceMarketOptions" not in head["node_config"]


def test_the_head_starts_prometheus_with_rays_config_on_loopback(cluster):
    """After `ray start --head`, the image's Prometheus with the config Ray writes into the session directory
    (it scrapes every node Ray lists), on 127.0.0.1:9090, where the dashboard looks for it."""
    commands = cluster["head_start_ray_commands"]
    start = next(i for i, command in enumerate(commands) if "ray start --head" in command)
    prometheus = [command for command in commands[start + 1 :] if re.search(r"(^|[;&|\s])prometheus\s", command)]
    assert len(prometheus) == 1, commands
    words = shlex.split(prometheus[0].split("nohup", 1)[1])
    assert words[0] == "prometheus" and "&" in words
    assert "--config.file=/tmp/ray/session_latest/metrics/prometheus/prometheus.yml" in words
    assert "--web.listen-address=127.0.0.1:9090" in words
    assert "launch-prometheus" not in " ".join(commands), "it downloads Prometheus from GitHub at every start"
    runs = " ".join(args for instruction, args in _instructions() if instruction == "RUN")
    assert re.search(r"apt-get install [^&]*\bprometheus\b", runs), "the image must hold the binary"


def test_docker_image_is_this_projects_image_at_its_version(prepared):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "speech2face.__version__"}
    version = speech2face.__version__  # the one place the version is declared
    docker = prepared["docker"]
    assert docker["image"].endswith(f"/speech2face-ray:{version}"), docker["image"]
    assert docker["container_name"] and docker["pull_before_run"] is True


def test_every_node_gets_an_iam_instance_profile(cluster):
    for name, spec in _node_types(cluster).items():
        arn = spec["node_config"].get("IamInstanceProfile", {}).get("Arn", "")
        assert re.fullmatch(r"arn:aws:iam::[^:]+:instance-profile/[\w+=,.@/-]+", arn), f"{name}: {arn!r}"


def test_nothing_is_installed_at_start_up(prepared):
    """Ray's AWS defaults would add `pip install boto3` etc.; the image already has everything, pinned."""
    for key in ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert not any("pip install" in command for command in prepared[key]), (key, prepared[key])


def test_ray_token_auth_is_on_with_the_token_mounted_on_every_node(cluster):
    env = _env_options(cluster)
    assert env.get("RAY_AUTH_MODE") == "token"
    token_path = env.get("RAY_AUTH_TOKEN_PATH")
    assert token_path in cluster["file_mounts"], "mount the token file where RAY_AUTH_TOKEN_PATH points"
    assert cluster["file_mounts"][token_path] == "~/.ray/auth_token", "the token written by `ray get-auth-token`"
    assert "RAY_AUTH_TOKEN" not in env, "the token itself must never be in cluster.yaml"
    assert not re.search(r"RAY_AUTH_MODE\s*=\s*disabled", CLUSTER_YAML.read_text())


def test_dashboard_is_not_exposed_beyond_the_ssh_tunnel(cluster):
    commands = " ".join(cluster["head_start_ray_commands"])
    assert "ray start --head" in commands
    assert "--dashboard-host" not in commands, "the default (127.0.0.1) is what `ray dashboard` tunnels to"


def test_no_credentials_in_the_cluster_config():
    text = CLUSTER_YAML.read_text()
    forbidden = {
        "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
        "AWS secret key setting": r"(?i)aws_secret_access_key|aws_session_token",
        "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        "hex token or secret": r"\b[0-9a-fA-F]{32,}\b",
        "password": r"(?i)password\s*[:=]\s*\S",
    }
    for what, pattern in forbidden.items():
        assert not re.search(pattern, text), f"cluster.yaml contains a {what}"


def test_every_placeholder_is_explained_in_the_docs():
    placeholders = set(re.findall(r"<[a-z][a-z-]*>", CLUSTER_YAML.read_text()))
    assert placeholders, "cluster.yaml marks what a user must change with <...>"
    doc = CLUSTER_DOC.read_text()
    missing = sorted(p for p in placeholders if p not in doc)
    assert not missing, f"docs/cluster.md does not explain {missing}"


# ---- docker/Dockerfile -----------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    return [tuple(item.split(None, 1)) for item in logical]


def _pip_installs() -> list[list[str]]:
    """The arguments after `pip install` of every pip command in RUN instructions."""
    installs = []
    for instruction, args in _instructions():
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    installs.append(words[i + 2 :])
    return installs


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


@pytest.mark.parametrize("name", PINNED_FILES)
def test_every_runtime_requirement_is_pinned_exactly(name):
    requirements = _requirements(ROOT / name)
    assert requirements
    for requirement in requirements:
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{name}: pin {requirement} with =="


def test_base_image_matches_pinned_ray_and_python():
    ray_pin = next(r for r in _requirements(ROOT / "requirements.txt") if r.name == "ray")
    ray_version = next(iter(ray_pin.specifier)).version
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    python = re.search(r">=\s*3\.(\d+)", requires_python)
    base = [args for instruction, args in _instructions() if instruction == "FROM"]
    assert base == [f"rayproject/ray:{ray_version}-py3{python.group(1)}-gpu"]


def test_image_installs_exactly_the_pinned_files_and_the_project_without_deps():
    installed_files, project_installs = {}, []
    for args in _pip_installs():
        flags = {arg for arg in args if arg.startswith("--")}
        assert flags <= {"--no-cache-dir", "--no-deps", "--no-build-isolation"}, f"unexpected pip flags {flags}"
        rest = [arg for arg in args if not arg.startswith("--")]
        if rest == ["."]:
            project_installs.append(flags)
            continue
        assert len(rest) == 2 and rest[0] == "-r", f"pip may only install a pinned file (-r FILE), got {args}"
        installed_files[rest[1]] = flags
    assert set(installed_files) == set(PINNED_FILES)
    assert "--no-deps" not in installed_files["requirements.txt"]
    assert "--no-deps" in installed_files["requirements-nodeps.txt"]
    assert project_installs == [{"--no-cache-dir", "--no-deps", "--no-build-isolation"}]


def test_image_copies_the_pinned_files_and_every_project_package():
    copied = set()
    for instruction, args in _instructions():
        if instruction == "COPY":
            sources = [word for word in shlex.split(args) if not word.startswith("--")][:-1]
            copied.update(sources)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    # `pip install .` reads pyproject.toml and the readme it names.
    needed = {pattern.rstrip("*") for pattern in packages} | set(PINNED_FILES) | {"pyproject.toml"}
    needed |= {pyproject["project"]["readme"]} if isinstance(pyproject["project"].get("readme"), str) else set()
    assert needed <= copied, f"the Dockerfile does not COPY {sorted(needed - copied)}"


def test_image_gets_yt_dlps_javascript_runtime_and_challenge_scripts():
    """Today's YouTube needs both; the image installs requirements.txt, so pinning them there is enough."""
    pins = {r.name: r for r in _requirements(ROOT / "requirements.txt")}
    assert "default" in pins["yt-dlp"].extras and "deno" in pins
    default_extra = [r for r in map(Requirement, importlib.metadata.requires("yt-dlp")) if r.marker
                     and r.marker.evaluate({"extra": "default"}) and not r.marker.evaluate({"extra": ""})]  # fmt: skip
    assert "yt-dlp-ejs" in {r.name for r in default_extra}
    assert importlib.metadata.version("yt-dlp-ejs") and importlib.metadata.version("deno")


def test_image_installs_ffmpeg():
    runs = " ".join(args for instruction, args in _instructions() if instruction == "RUN")
    assert re.search(r"apt-get install [^&]*\bffmpeg\b", runs)
