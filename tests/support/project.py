"""The project's own Python modules, by name, for the structure tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "speech2face",
    "telemetry",
    "pipelines",
    "trainer",
    "tuning",
    "serving",
    "demo",
    "demo_corpus",
    "s2f",
    "benchmarks",
)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules
