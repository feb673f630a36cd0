"""/metrics sums every process of a program (multiprocess mode) and adds its CPU and memory."""

import os
import subprocess
import sys

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from common.metrics import ProcessTreeCollector, process_tree, registry

INCREMENT = (
    "from prometheus_client import Counter, Histogram;"
    "Counter('demo_jobs', 'jobs', ['kind']).labels('a').inc();"
    "Histogram('demo_seconds', 'secs').observe(0.2)"
)


def samples(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_from_several_processes_are_summed(tmp_path, monkeypatch):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", INCREMENT], env=env, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    body = Client().get("/metrics").content.decode()
    values = samples(body)
    assert values[("demo_jobs_total", (("kind", "a"),))] == 3
    assert values[("demo_seconds_count", ())] == 3
    assert values[("process_cpu_seconds_total", ())] > 0
    assert values[("process_resident_memory_bytes", ())] > 0


def test_without_multiprocess_dir_the_default_registry_serves(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from prometheus_client import REGISTRY

    assert registry() is REGISTRY


def test_process_tree_sums_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        families = {f.name: f for f in ProcessTreeCollector(os.getpid()).collect()}
        assert families["process_tree_processes"].samples[0].value >= 2
        alone = {f.name: f for f in ProcessTreeCollector(child.pid).collect()}
        assert alone["process_tree_processes"].samples[0].value == 1
        assert (
            families["process_resident_memory_bytes"].samples[0].value
            > alone["process_resident_memory_bytes"].samples[0].value
        )
    finally:
        child.kill()
        child.wait()
