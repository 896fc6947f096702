"""The set-up scripts install no system package behind the user's back: only scripts/setup_system.sh does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import ROOT


def _path_with_recording_apt(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH has a fake apt-get (and sudo) that records its calls, and no mpirun."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    for name in ("apt-get", "sudo"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        tool.chmod(0o755)
    for name in ("bash", "dirname", "cat", "sha256sum", "cut", "grep", "env", "dpkg-query"):
        real = next((Path(d) / name for d in os.environ["PATH"].split(":") if (Path(d) / name).is_file()), None)
        if real is not None:
            (bin_dir / name).symlink_to(real)
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["PATH"] = str(bin_dir)
    return env, calls


def test_the_distributed_profile_without_mpirun_names_the_system_step_and_installs_nothing(tmp_path: Path) -> None:
    env, calls = _path_with_recording_apt(tmp_path)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_env.sh"), "distributed"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "scripts/setup_system.sh" in done.stderr and "mpirun" in done.stderr
    assert not calls.exists(), calls.read_text()


def test_the_system_step_says_what_it_installs_before_installing(tmp_path: Path) -> None:
    env, calls = _path_with_recording_apt(tmp_path)
    (tmp_path / "bin" / "dpkg-query").unlink(missing_ok=True)  # nothing reads as installed
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_system.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    if os.geteuid() != 0:  # without root it asks for sudo, which the fake grants: the same calls follow
        assert "sudo" in calls.read_text()
    assert done.returncode == 0, done.stderr
    announced = done.stderr.splitlines()[0]
    assert announced.startswith("Installing with apt-get, for the tests:")
    for package in ("chromium", "dataset-fashion-mnist", "openmpi-bin"):
        assert package in announced
    assert "install -y -qq chromium chromium-driver dataset-fashion-mnist openmpi-bin libopenmpi-dev" in calls.read_text()
