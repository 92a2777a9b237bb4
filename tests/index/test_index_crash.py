"""A process killed with SIGKILL while it updates a FAISS index leaves a complete, consistent index.

:meth:`dahash.index.FaissIndex.save` writes a sibling temporary directory (manifest last), renames
the old index to ``.<name>.bak``, renames the new one into place and deletes the backup;
:meth:`~dahash.index.FaissIndex.load` puts the backup back when a crash fell between the renames.

Here a writer subprocess loops: open the index, add a batch of random 64-bit codes under new ids,
save, reporting each step on stdout.  The parent SIGKILLs it at seeded random moments (anywhere in
the loop, or inside a save), then opens the index (every manifest sha256 is checked by the load)
and requires exactly the count of the last finished save or of the save that was cut off, every
stored code equal to what the writer generated for its id, and each code found at distance 0.
One more writer is held between the two renames of a save and killed there, so the recovery from
``.<name>.bak`` runs for sure.  Finally ``dahash serve``'s app is started on the recovered index.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from tiny_runs import backbone_built_once, tiny_dslr_index  # noqa: F401 (the fixture must be in this module)
from dahash.index import FaissIndex, open_index

N_BITS = 64  # random 64-bit codes do not collide, so each code finds its own id
BATCH = 2000
SEED = 20240607
TRIALS = 5

pytestmark = pytest.mark.usefixtures("backbone_built_once")

# The writer: imports (about 1.5 s: torch comes with dahash), says "ready", waits for "go" on stdin,
# then grows the index by BATCH codes per loop until it is killed.  Codes of the ids
# [start, start + BATCH) come from default_rng([SEED, start]), so the parent can regenerate them.
WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from dahash.index import open_index

    path, batch, seed, n_bits, hold_swap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    base = int(sys.argv[6])
    if hold_swap:
        rename = os.rename
        def held(src, dst):
            rename(src, dst)
            if os.path.basename(dst).endswith(".bak"):  # the old index moved away, the new one not yet in
                print("swapped-out", flush=True)
                time.sleep(60)
        os.rename = held
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":  # the test ended (stdin closed) without using this writer
        sys.exit(0)
    while True:
        index = open_index(path)
        n = len(index)
        start = n - base + 1  # random items have the ids 1, 2, ...
        ids = np.arange(start, start + batch, dtype=np.int64)
        codes = np.random.default_rng([seed, start]).integers(0, 256, size=(batch, (n_bits + 7) // 8), dtype=np.uint8)
        index.add(codes, ids, [{"path": f"/random/{i}.jpg", "label": None, "predicted": None} for i in ids.tolist()])
        print(f"save {n} {n + batch}", flush=True)
        t0 = time.perf_counter()
        index.save(path)
        print(f"saved {n + batch} {time.perf_counter() - t0:.4f}", flush=True)
""")


class Writer:
    """One writer subprocess, its stdout and stderr lines collected by a thread."""

    def __init__(self, index: Path, base: int, hold_swap: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index), str(BATCH), str(SEED), str(N_BITS),
             "1" if hold_swap else "0", str(base)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)  # EOF

    def next_line(self, timeout: float = 30) -> str:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"writer exited early (status {self.proc.wait()}): " + "\n".join(self.seen))
        self.seen.append(line)
        return line

    def wait_for(self, prefix: str, timeout: float = 30) -> str:
        while not (line := self.next_line(timeout)).startswith(prefix):
            pass
        return line

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> list[str]:
        """SIGKILL, then every line the writer printed before it died."""
        self.proc.send_signal(signal.SIGKILL)
        status = self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        assert status == -signal.SIGKILL, f"writer exited by itself (status {status}): " + "\n".join(self.seen)
        return self.seen


def expected_codes(count: int, base_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, codes) the writers' loops produce for the random items of an index of ``count`` items."""
    n_random = count - len(base_codes)
    assert n_random % BATCH == 0
    ids = np.arange(1, n_random + 1, dtype=np.int64)
    codes = [np.random.default_rng([SEED, start]).integers(0, 256, size=(BATCH, N_BITS // 8), dtype=np.uint8)
             for start in range(1, n_random + 1, BATCH)]
    return ids, np.concatenate(codes) if codes else np.empty((0, N_BITS // 8), np.uint8)


def check_index(path: Path, allowed: set[int], base: FaissIndex) -> int:
    """Open the index as a server would; it must hold one of the ``allowed`` counts and exactly the
    codes written for them, each found at distance 0 (random ones under their own id)."""
    index = open_index(path)  # checks every file's sha256 against the manifest
    assert isinstance(index, FaissIndex)
    count = len(index)
    assert count in allowed, f"count {count}, expected one of {sorted(allowed)}"
    assert index.stats()["count"] == count
    base_ids, base_codes = base._ids, base._codes
    ids, codes = expected_codes(count, base_codes)
    np.testing.assert_array_equal(index._ids, np.concatenate([base_ids, ids]))
    np.testing.assert_array_equal(index._codes, np.concatenate([base_codes, codes]))
    # One FAISS thread: on a busy machine its OpenMP threads spin against each other (seen: a
    # 30k x 30k search 0.9 s on one thread, 21 s on two busy cores).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        result = index.search(index._codes, 1)
    finally:
        faiss.omp_set_num_threads(threads)
    assert (result.distances[:, 0] == 0).all()
    np.testing.assert_array_equal(result.ids[len(base_ids):, 0], ids)  # dslr codes may tie, random ones do not
    if len(ids):
        assert result.metadata[-1][0]["path"] == f"/random/{ids[-1]}.jpg"
    return count


def leftovers(path: Path) -> list[str]:
    """What a killed save may leave beside the index: its temporary directory and the backup."""
    names = sorted(p.name for p in path.parent.iterdir() if p.name != path.name)
    for name in names:
        assert name == f".{path.name}.bak" or (name.startswith(f".{path.name}.") and name.endswith(".tmp")), name
    return names


@pytest.fixture(scope="module")
def run_and_index(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # The index in a folder of its own: the test lists what a crash leaves beside it.
    yield tiny_dslr_index(tiny_office31, tmp_path_factory.mktemp("index-crash"), bits=N_BITS,
                          index_name="indexes/index")


def test_sigkill_during_updates_leaves_a_consistent_index(run_and_index: dict[str, Any]) -> None:
    path: Path = run_and_index["index"]
    base = FaissIndex.load(path)
    n_base = len(base)

    # Writers are started two ahead, so their imports overlap the trials before them; the last one
    # holds a save between its renames.
    holds = [False] * TRIALS + [True]
    pending = [Writer(path, n_base, hold) for hold in holds[:2]]
    spawned = list(pending)

    def next_writer() -> Writer:
        writer = pending.pop(0)
        if len(spawned) < len(holds):
            pending.append(Writer(path, n_base, holds[len(spawned)]))
            spawned.append(pending[-1])
        return writer

    try:
        _kill_and_check(path, base, next_writer, run_and_index)
    finally:  # writers still waiting (a failed trial) exit when their stdin closes; killed anyway
        for writer in spawned:
            if writer.proc.poll() is None:
                writer.proc.kill()
            writer.proc.wait()
            for pipe in (writer.proc.stdin, writer.proc.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()


def _kill_and_check(path: Path, base: FaissIndex, next_writer: Any, run_and_index: dict[str, Any]) -> None:
    n_base = len(base)
    rng = np.random.default_rng(SEED)
    count = n_base
    save_times: list[float] = []
    landed: list[str] = []
    started = time.monotonic()
    for trial in range(TRIALS):
        writer = next_writer()
        assert writer.wait_for("ready") == "ready"
        writer.go()
        if trial % 2 == 0:
            # Anywhere in the loop: loading, adding, writing files, renaming.
            time.sleep(rng.uniform(0.05, 0.8))
        else:
            # Inside a save: after its "save" line, within about one save's duration.
            for _ in range(int(rng.integers(1, 3))):
                writer.wait_for("save ")
            typical = float(np.median(save_times)) if save_times else 0.05
            time.sleep(rng.uniform(0, 1.2 * typical))
        seen = writer.kill()

        steps = [line for line in seen if line.startswith(("save ", "saved "))]
        save_times += [float(line.split()[2]) for line in steps if line.startswith("saved ")]
        if steps and steps[-1].startswith("save "):
            _, before, after = steps[-1].split()
            allowed = {int(before), int(after)}
            landed.append("in save")
        else:
            allowed = {int(steps[-1].split()[1]) if steps else count}
            landed.append("outside save")
        assert min(allowed) >= count  # nothing finished earlier is lost
        count = check_index(path, allowed, base)
        leftovers(path)

    # Killed between the two renames: the index directory is gone, the backup must be put back.
    held = next_writer()
    assert held.wait_for("ready") == "ready"
    held.go()
    line = held.wait_for("save ")
    before = int(line.split()[1])
    held.wait_for("swapped-out")
    held.kill()
    assert not path.exists() and (path.parent / f".{path.name}.bak" / "manifest.json").is_file()
    count = check_index(path, {before}, base)
    assert path.is_dir() and not (path.parent / f".{path.name}.bak").exists()
    stray = leftovers(path)
    # The next save cleans up after the killed writers: their temporary directories are gone.
    FaissIndex.load(path).save(path)
    assert leftovers(path) == []
    print(f"\n{TRIALS} kills ({', '.join(landed)}) + 1 between the renames in {time.monotonic() - started:.1f} s; "
          f"{len(save_times)} saves of {BATCH}-code batches, median {np.median(save_times or [0]) * 1000:.0f} ms; "
          f"final count {count}; stray temporary dirs: {len(stray)}")

    # The recovered index serves: /stats, a code search and an image upload.
    from fastapi.testclient import TestClient

    from dahash.retrieval.serve import create_app

    with TestClient(create_app(path)) as client:
        stats = client.get("/stats").json()
        assert stats["count"] == count and stats["n_bits"] == N_BITS
        ids, codes = expected_codes(count, base._codes)
        probe = codes[-1]
        body = client.post("/search", json={"code": probe.tobytes().hex(), "k": 3}).json()
        assert body["hits"][0]["distance"] == 0 and body["hits"][0]["id"] == int(ids[-1])
        assert body["hits"][0]["path"] == f"/random/{ids[-1]}.jpg"
        image = Path(run_and_index["dslr"][0])
        response = client.post("/search", files={"image": (image.name, image.read_bytes(), "image/jpeg")},
                               data={"k": "5"})
        assert response.status_code == 200, response.text
        assert response.json()["hits"][0]["distance"] == 0

    # And the next update after the crashes works and clears the leftovers' backup.
    index = open_index(path)
    index.add(np.zeros((1, N_BITS // 8), np.uint8), [-5], [{"path": "zero"}])
    index.save(path)
    assert len(open_index(path)) == count + 1
    assert not (path.parent / f".{path.name}.bak").exists()


def test_a_writer_killed_before_its_owner_file_is_cleaned_up_by_name(tmp_path: Path) -> None:
    # Found by the SIGKILL test under load: a kill between creating the temporary directory and writing
    # its owner file left a directory nothing could attribute; its name now says who made it.
    import subprocess
    import sys

    from dahash.index.faiss_index import _temporary_prefix

    path = tmp_path / "index"
    index = FaissIndex(16)
    index.add(np.zeros((1, 2), np.uint8), np.array([7]))
    index.save(path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    orphan = tmp_path / (_temporary_prefix(path).rsplit("-", 2)[0] + f"-{dead}-abc.tmp")
    live = tmp_path / (_temporary_prefix(path) + "xyz.tmp")  # this process: alive
    orphan.mkdir()
    live.mkdir()
    FaissIndex.load(path).save(path)
    assert not orphan.exists() and live.exists()
