"""Worker sizing: CPU affinity intersected with cgroup v1/v2 quotas, over fake cgroup trees."""

from pathlib import Path

import pytest

from app.platform import (
    available_cpus,
    cgroup_cpu_limit,
    own_cgroup_paths,
    quota_from_cfs,
    quota_from_cpu_max,
    worker_count,
)


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def proc_cgroup(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
    ],
)
def test_cpu_max_is_parsed(text: str, cpus: float | None) -> None:
    assert quota_from_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"), [("-1", "100000", None), ("300000", "100000", 3.0)]
)
def test_cfs_quota_is_parsed(quota: str, period: str, cpus: float | None) -> None:
    assert quota_from_cfs(quota, period) == cpus


def test_own_cgroups_keep_the_v2_entry_and_v1_cpu_controllers() -> None:
    text = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/kubepods/pod1\n"

    assert own_cgroup_paths(text) == ["/docker/abc", "/kubepods/pod1"]


def test_v2_quota_in_a_namespaced_container(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "150000 100000\n")

    assert cgroup_cpu_limit(tmp_path, ["/"]) == 1.5
    assert available_cpus(affinity=8, cgroup_root=tmp_path, proc_self_cgroup=Path("/none")) == 2


def test_v2_smallest_quota_on_the_path_to_the_root_wins(tmp_path: Path) -> None:
    write(tmp_path, "kubepods/cpu.max", "400000 100000")
    write(tmp_path, "kubepods/pod1/cpu.max", "100000 100000")
    write(tmp_path, "kubepods/pod1/app/cpu.max", "max 100000")
    cgroup = proc_cgroup(tmp_path, "0::/kubepods/pod1/app\n")

    assert available_cpus(affinity=16, cgroup_root=tmp_path, proc_self_cgroup=cgroup) == 1


def test_v1_quota(tmp_path: Path) -> None:
    write(tmp_path, "cpu,cpuacct/cpu.cfs_quota_us", "300000")
    write(tmp_path, "cpu,cpuacct/cpu.cfs_period_us", "100000")
    cgroup = proc_cgroup(tmp_path, "4:cpu,cpuacct:/docker/not-visible-here\n")

    assert available_cpus(affinity=32, cgroup_root=tmp_path, proc_self_cgroup=cgroup) == 3


def test_affinity_wins_when_smaller_than_the_quota(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "800000 100000")

    assert available_cpus(affinity=2, cgroup_root=tmp_path, proc_self_cgroup=Path("/none")) == 2


def test_no_quota_means_affinity_and_never_zero(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "max 100000")
    write(tmp_path, "small/cpu.max", "1000 100000")
    cgroup = proc_cgroup(tmp_path, "0::/small\n")

    assert available_cpus(affinity=4, cgroup_root=tmp_path, proc_self_cgroup=Path("/none")) == 4
    assert available_cpus(affinity=4, cgroup_root=tmp_path, proc_self_cgroup=cgroup) == 1


def test_web_concurrency_wins_over_the_cpu_count() -> None:
    assert worker_count(web_concurrency=None, cpus=3) == 3
    assert worker_count(web_concurrency=7, cpus=3) == 7
