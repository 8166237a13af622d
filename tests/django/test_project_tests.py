"""docs/django.md's tests of a consumer, taken from the page and run in a project on disk: the
``MqttCommunicator`` under Django's test runner (``manage.py test``) and under pytest with
pytest-django, each against its test database, with no broker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.django_project import clean_env, make_project, readings

DOC = Path(__file__).resolve().parents[2] / "docs" / "django.md"
# A code block whose first line names its file: "# telemetry/tests.py   <comment>".
_BLOCK = re.compile(r"```(?:python|ini)\n# (?P<path>\S+)[^\n]*\n(?P<text>.*?)```", re.DOTALL)


def documented_files() -> dict[str, str]:
    files = {m["path"]: m["text"] for m in _BLOCK.finditer(DOC.read_text())}
    wanted = ("telemetry/tests.py", "pytest.ini", "test_consumers.py")
    assert set(wanted) <= set(files), sorted(files)
    return {path: files[path] for path in wanted}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("django-tests"), documented_files())


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_py_test_runs_the_documented_test_against_the_test_database(
    project: Path,
) -> None:
    result = run(project, "manage.py", "test", "telemetry", "-v", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_a_reading_is_counted_and_acknowledged" in result.stderr
    assert "Ran 1 test" in result.stderr
    assert readings(project, "d1") is None  # the test database, not the project's


def test_pytest_django_runs_the_documented_test(project: Path) -> None:
    result = run(project, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_consumers.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert readings(project, "d1") is None
