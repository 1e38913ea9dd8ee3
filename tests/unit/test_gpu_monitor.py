"""Tests for the GPU monitor: a fake pynvml stands in for the NVIDIA driver this machine lacks."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import MappingProxyType

import pynvml
import pytest

from tests.fake_pynvml import (
    FAKED_FUNCTIONS,
    FakeGpu,
    FakePynvml,
    NVMLError_DriverNotLoaded,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_NoPermission,
    NVMLError_NotSupported,
    NVMLLibraryMismatchError,
)
from tui_llm.engine.protocol import DeviceInfo
from tui_llm.gpu import (
    GpuSample,
    MonitorSnapshot,
    MonitorThread,
    NullMonitor,
    NvmlMonitor,
    ProcessMemory,
    create_monitor,
    engine_vram,
    gpu_samples_from_devices,
    nvidia_gpu_present,
)

GIB = 2**30


def two_gpus() -> FakePynvml:
    return FakePynvml(
        [
            FakeGpu(
                name="NVIDIA GeForce RTX 4090",
                memory_total=24 * GIB,
                memory_used=5 * GIB,
                utilization=88,
                temperature=71,
                power_mw=312_500,
                power_limit_mw=450_000,
                compute_processes=[(4242, 3 * GIB), (777, GIB)],
            ),
            FakeGpu(name="NVIDIA RTX A2000", memory_total=6 * GIB, memory_used=GIB // 2),
        ]
    )


def test_the_fake_only_fakes_functions_the_real_pynvml_has() -> None:
    missing = [name for name in FAKED_FUNCTIONS if not hasattr(pynvml, name)]
    assert missing == []
    for name in ("NVMLError_NotSupported", "NVMLError_LibraryNotFound", "NVML_TEMPERATURE_GPU"):
        assert hasattr(pynvml, name)


def test_values_flow_through_in_the_units_people_read() -> None:
    monitor = create_monitor(two_gpus())
    assert isinstance(monitor, NvmlMonitor)
    assert monitor.available and monitor.reason is None

    first, second = monitor.sample_gpus()

    assert first == GpuSample(
        index=0,
        name="NVIDIA GeForce RTX 4090",
        memory_used=5 * GIB,
        memory_total=24 * GIB,
        utilization_pct=88,
        temperature_c=71,
        power_w=312.5,
        power_limit_w=450.0,
    )
    assert (second.index, second.name, second.memory_total) == (1, "NVIDIA RTX A2000", 6 * GIB)
    assert monitor.sample_processes()[0] == (
        ProcessMemory(4242, 3 * GIB),
        ProcessMemory(777, GIB),
    )
    monitor.close()


def test_a_failing_metric_gives_none_and_the_rest_still_reads() -> None:
    nvml = two_gpus()
    nvml.fail("nvmlDeviceGetPowerUsage", NVMLError_NotSupported)
    nvml.fail("nvmlDeviceGetEnforcedPowerLimit", NVMLError_NotSupported)
    nvml.fail("nvmlDeviceGetTemperature", NVMLError_NoPermission, gpu=1)
    nvml.fail("nvmlDeviceGetMemoryInfo", NVMLError_GpuIsLost, gpu=1)
    monitor = create_monitor(nvml)

    first, second = monitor.sample_gpus()

    assert (first.power_w, first.power_limit_w) == (None, None)
    assert (first.memory_used, first.temperature_c, first.utilization_pct) == (5 * GIB, 71, 88)
    assert (second.memory_used, second.memory_total, second.temperature_c) == (None, None, None)
    assert second.name == "NVIDIA RTX A2000"


def test_not_available_markers_read_as_none() -> None:
    nvml = two_gpus()
    nvml.gpus[0].power_mw = 0xFFFFFFFF
    nvml.gpus[0].compute_processes = [(4242, None)]

    monitor = create_monitor(nvml)

    assert monitor.sample_gpus()[0].power_w is None
    assert monitor.sample_processes()[0] == (ProcessMemory(4242, None),)


def test_process_lists_merge_compute_and_graphics_and_fall_back_to_v2() -> None:
    nvml = two_gpus()
    nvml.gpus[0].graphics_processes = [(900, 2 * GIB), (4242, 3 * GIB)]
    nvml.fail("nvmlDeviceGetComputeRunningProcesses", NVMLLibraryMismatchError)
    nvml.fail("nvmlDeviceGetGraphicsRunningProcesses", NVMLError_NotSupported, gpu=1)
    nvml.fail("nvmlDeviceGetComputeRunningProcesses_v2", NVMLError_NotSupported, gpu=1)

    processes = create_monitor(nvml).sample_processes()

    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 2
    assert processes == {
        0: (ProcessMemory(4242, 3 * GIB), ProcessMemory(900, 2 * GIB), ProcessMemory(777, GIB))
    }


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NVMLError_LibraryNotFound, "no NVIDIA driver (libnvidia-ml.so.1 not found)"),
        (NVMLError_DriverNotLoaded, "the NVIDIA driver is not loaded"),
        (NVMLError_NoPermission, "no permission to query the NVIDIA driver"),
        (RuntimeError, "NVML failed to start: RuntimeError"),
    ],
)
def test_init_failure_gives_a_null_monitor_that_says_why(
    error: type[BaseException], reason: str
) -> None:
    nvml = FakePynvml([FakeGpu()], init_error=error)

    monitor = create_monitor(nvml)

    assert isinstance(monitor, NullMonitor)
    assert not monitor.available
    assert monitor.reason == reason
    assert monitor.sample_gpus() == ()
    assert monitor.sample_processes() == {}
    monitor.close()


def test_no_pynvml_module_at_all_gives_a_null_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError

    monitor = create_monitor()

    assert isinstance(monitor, NullMonitor)
    assert monitor.reason == "nvidia-ml-py is not installed (no module named pynvml)"
    assert not nvidia_gpu_present()


def test_the_real_pynvml_without_a_driver_says_so_in_one_line() -> None:
    monitor = create_monitor()
    if monitor.available:
        monitor.close()
        pytest.skip("this machine has an NVIDIA driver")
    assert monitor.reason is not None
    assert "\n" not in monitor.reason
    assert "NVIDIA" in monitor.reason or "NVML" in monitor.reason


def test_no_gpus_is_a_null_monitor_and_nvml_is_shut_down() -> None:
    nvml = FakePynvml([])

    monitor = create_monitor(nvml)

    assert isinstance(monitor, NullMonitor)
    assert monitor.reason == "the NVIDIA driver reports no GPU"
    assert nvml.initialized == 0


def test_nvidia_gpu_present() -> None:
    nvml = two_gpus()
    assert nvidia_gpu_present(nvml)
    assert nvml.initialized == 0  # it shut NVML down again
    assert not nvidia_gpu_present(FakePynvml([]))
    assert not nvidia_gpu_present(FakePynvml([FakeGpu()], init_error=NVMLError_DriverNotLoaded))


def test_close_shuts_nvml_down_once_and_later_samples_are_empty() -> None:
    nvml = two_gpus()
    monitor = create_monitor(nvml)

    monitor.close()
    monitor.close()

    assert nvml.calls["nvmlShutdown"] == 1
    assert nvml.initialized == 0
    assert monitor.sample_gpus() == ()


def test_history_keeps_the_last_minute_of_vram_per_gpu() -> None:
    nvml = two_gpus()
    # One sample a second and a 3 s window: the ring holds the last three values.
    thread = MonitorThread(create_monitor(nvml), interval_s=1.0, history_s=3.0)
    for used_gib in range(1, 6):
        nvml.gpus[0].memory_used = used_gib * GIB
        snapshot = thread.sample_once()

    assert thread.history(0) == (3 * GIB, 4 * GIB, 5 * GIB)
    assert snapshot.vram_history[0] == (3 * GIB, 4 * GIB, 5 * GIB)
    assert snapshot.vram_history[1] == (GIB // 2,) * 3
    assert thread.history(7) == ()


def test_default_history_covers_sixty_seconds() -> None:
    thread = MonitorThread(create_monitor(two_gpus()), interval_s=0.5)
    for _ in range(130):
        thread.sample_once()
    assert len(thread.history(0)) == 120


def test_a_failed_vram_reading_leaves_no_hole_in_the_history() -> None:
    nvml = two_gpus()
    thread = MonitorThread(create_monitor(nvml), interval_s=1.0)
    thread.sample_once()
    nvml.fail("nvmlDeviceGetMemoryInfo", NVMLError_GpuIsLost, gpu=0)
    thread.sample_once()
    assert thread.history(0) == (5 * GIB,)


def test_process_list_is_read_less_often_and_repeated_between_reads() -> None:
    nvml = two_gpus()
    thread = MonitorThread(create_monitor(nvml), interval_s=1.0, process_every=3)

    snapshots = [thread.sample_once() for _ in range(7)]

    # Samples 0, 3 and 6 read the list; the others repeat it.
    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses"] == 3 * 2
    assert nvml.calls["nvmlDeviceGetMemoryInfo"] == 7 * 2
    assert all(s.processes[0][0] == ProcessMemory(4242, 3 * GIB) for s in snapshots)


def test_setting_the_engine_pid_rereads_the_process_list_at_once() -> None:
    nvml = two_gpus()
    thread = MonitorThread(create_monitor(nvml), interval_s=1.0, process_every=100)
    thread.sample_once()
    nvml.gpus[1].compute_processes = [(5555, 2 * GIB)]
    assert engine_vram(thread.sample_once(), 5555) == {}

    thread.set_engine_pid(5555)
    snapshot = thread.sample_once()

    assert engine_vram(snapshot, 5555) == {1: 2 * GIB}
    assert thread.engine_pid == 5555


def test_engine_vram_sums_the_engine_share_per_gpu() -> None:
    snapshot = MonitorSnapshot(
        timestamp=0.0,
        gpus=(),
        processes=MappingProxyType(
            {
                0: (ProcessMemory(10, 3 * GIB), ProcessMemory(11, GIB)),
                1: (ProcessMemory(11, 2 * GIB), ProcessMemory(10, None)),
                2: (ProcessMemory(10, GIB),),
            }
        ),
        host=None,
    )
    assert engine_vram(snapshot, 10) == {0: 3 * GIB, 2: GIB}
    assert engine_vram(snapshot, 11) == {0: GIB, 1: 2 * GIB}
    assert engine_vram(snapshot, 99) == {}
    assert engine_vram(snapshot, None) == {}


@pytest.fixture
def child_holding_memory() -> Iterator[subprocess.Popen[str]]:
    """A real process that holds 64 MiB it has written to (so it is resident)."""
    code = "import sys, time; data = b'x' * (64 << 20); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    yield child
    child.kill()
    child.wait()


def test_host_ram_and_the_engine_rss_come_from_psutil(
    child_holding_memory: subprocess.Popen[str],
) -> None:
    thread = MonitorThread(NullMonitor("no NVIDIA driver"), interval_s=1.0)
    host = thread.sample_once().host
    assert host is not None
    assert 0 < host.ram_used <= host.ram_total
    assert host.engine_rss is None

    thread.set_engine_pid(child_holding_memory.pid)
    host = thread.sample_once().host
    assert host is not None and host.engine_rss is not None
    assert host.engine_rss >= 64 << 20

    child_holding_memory.kill()
    child_holding_memory.wait()
    host = thread.sample_once().host
    assert host is not None and host.engine_rss is None


def test_null_monitor_snapshots_carry_the_reason_and_the_host() -> None:
    thread = MonitorThread(NullMonitor("no NVIDIA driver (libnvidia-ml.so.1 not found)"))

    snapshot = thread.sample_once()

    assert thread.reason == "no NVIDIA driver (libnvidia-ml.so.1 not found)"
    assert snapshot.gpus == ()
    assert snapshot.error == "no NVIDIA driver (libnvidia-ml.so.1 not found)"
    assert snapshot.host is not None


class ExplodingMonitor(NullMonitor):
    def __init__(self) -> None:
        super().__init__("unused")

    @property
    def reason(self) -> str | None:
        return None

    def sample_gpus(self) -> tuple[GpuSample, ...]:
        raise RuntimeError("driver went away\nbadly")


def test_an_unexpected_sampling_error_becomes_the_snapshot_error() -> None:
    snapshot = MonitorThread(ExplodingMonitor()).sample_once()
    assert snapshot.error == "GPU sampling failed: RuntimeError: driver went away badly"
    assert snapshot.host is not None


def test_the_thread_calls_back_from_its_own_thread_and_stops_promptly() -> None:
    nvml = two_gpus()
    received: queue.Queue[tuple[MonitorSnapshot, threading.Thread]] = queue.Queue()
    thread = MonitorThread(
        create_monitor(nvml),
        lambda snapshot: received.put((snapshot, threading.current_thread())),
        interval_s=0.02,
    )
    thread.start()
    snapshots = [received.get(timeout=5) for _ in range(3)]
    assert all(caller is thread for _, caller in snapshots)
    assert [s.gpus[0].memory_used for s, _ in snapshots] == [5 * GIB] * 3
    assert snapshots[0][0].timestamp <= snapshots[2][0].timestamp
    assert thread.latest is not None

    thread.stop()

    assert not thread.is_alive()
    assert nvml.initialized == 0  # the thread owns the monitor and closed it
    thread.stop()  # twice is harmless


def test_stop_does_not_wait_for_the_next_sample() -> None:
    received: queue.Queue[MonitorSnapshot] = queue.Queue()
    thread = MonitorThread(create_monitor(two_gpus()), received.put, interval_s=30.0)
    thread.start()
    received.get(timeout=5)

    started = time.monotonic()
    thread.stop()

    assert time.monotonic() - started < 1.0
    assert not thread.is_alive()


def test_a_failing_callback_does_not_stop_sampling() -> None:
    calls: queue.Queue[int] = queue.Queue()

    def on_sample(snapshot: MonitorSnapshot) -> None:
        calls.put(1)
        raise RuntimeError("the app is gone")

    thread = MonitorThread(create_monitor(two_gpus()), on_sample, interval_s=0.02)
    thread.start()
    for _ in range(3):
        calls.get(timeout=5)
    assert thread.is_alive()
    thread.stop()


def test_bad_thread_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        MonitorThread(NullMonitor("x"), interval_s=0)
    with pytest.raises(ValueError, match="process_every"):
        MonitorThread(NullMonitor("x"), process_every=0)


def test_llama_devices_become_memory_only_samples_for_the_fallback_gauge() -> None:
    devices = [
        DeviceInfo("CPU", "AMD Ryzen", "cpu", 10 * GIB, 32 * GIB),
        DeviceInfo("RPC[127.0.0.1:50052]", "RPC device", "gpu", 3 * GIB, 8 * GIB),
    ]

    (sample,) = gpu_samples_from_devices(devices)

    assert sample == GpuSample(0, "RPC device", 5 * GIB, 8 * GIB, None, None, None, None)
