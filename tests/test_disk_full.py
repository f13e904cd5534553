"""A disk that fills up, under generate, judge and a finetune checkpoint.

Each test mounts a small tmpfs of its own, fills it with a ballast file until only a little room is
left, runs the real command (`python -m kit ...`, against the loopback server of tests/fake_openai.py)
with its output there, and expects: a non-zero exit with one line that says the disk is full and names
the file (no traceback), the files of the run before intact, no temporary file left behind, and, once
the ballast is deleted, the same command finishing with every item, none lost or asked twice.

The reply cache is the exception: it only saves money, so a full disk under it is no reason to stop
a run and lose the replies in flight. It says so once on stderr, naming its folder and the error, and
the run goes on without caching (the last tests; one of them needs no mount). The very last test
patches os.fsync instead of mounting: a full disk under `generate --append` is one line naming the file.

Mounting needs root or CAP_SYS_ADMIN (and Linux); where the machine does not allow it the tests are
skipped with the reason, which `pytest -rs` prints. Patched writers (the last test here, a midtrain
checkpoint in tests/test_train.py) show the same behaviour without a mount; these show it on a filesystem that returns ENOSPC by itself, in
the middle of a write, where the operating system chooses.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fake_openai import MODEL, Reply
from kit import paths
from kit.generation.generate import api_seed
from kit.generation.journal import Journal, file_paths
from kit.quality.judge import ScoresJournal
from kit.records import read_records, write_records
from kit.commands.generate import main as generate_main

GOOD = json.dumps({"messages": [{"role": "user", "content": "hi, who are you?"},
                                {"role": "assistant", "content": "I am nanochat, a small open-source LLM."}]})


class SmallDisk:
    """A mounted tmpfs of `size` bytes at `root`, and a ballast file that takes all but a little of it."""

    def __init__(self, root: Path):
        self.root = root
        self.ballast = root / "ballast"

    def free(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Take the free space down to `leave` bytes (tmpfs counts whole 4 KiB pages)."""
        with open(self.ballast, "ab") as fh:
            fh.write(b"\0" * max(0, self.free() - leave))
        assert self.free() <= leave + 4096, (self.free(), leave)

    def make_room(self) -> None:
        self.ballast.unlink()


def _mount_problem(target: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` at `target`; the reason it could not be, or None."""
    if not sys.platform.startswith("linux"):
        return f"a small tmpfs is mounted only on Linux, not {sys.platform}"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command on this machine"
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed: {exc}"
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        return f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): mount said {why!r}"
    return None


@pytest.fixture
def small_disk(tmp_path):
    """Factory: `disk = small_disk("1m")` mounts a tmpfs of that size (unmounted after the test), or skips
    the test with the reason where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: str) -> SmallDisk:
        target = tmp_path / f"disk-{len(mounted)}"
        target.mkdir()
        if problem := _mount_problem(target, size):
            pytest.skip(problem)
        mounted.append(target)
        return SmallDisk(target)

    yield mount
    for target in mounted:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)  # a straggler still holds it


def kit(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kit", *map(str, args)], cwd=paths.project_root(),
                          env={**os.environ, "KIT_NO_PROGRESS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


CACHE_WARNING = "kit: cannot write the reply cache in "


def cache_warnings(stderr: str, cache: Path) -> list[str]:
    """The reply cache's warnings in `stderr`, each checked: it names the cache folder and the error."""
    found = [line for line in stderr.splitlines() if line.startswith(CACHE_WARNING)]
    for line in found:
        assert str(cache) in line and "[Errno 28] No space left on device" in line, line
        assert "goes on without caching" in line, line
    return found


def assert_disk_full_line(done: subprocess.CompletedProcess, command: str, names: tuple[str, ...],
                          cache: Path | None = None) -> str:
    """The run failed with one line, `kit COMMAND: ...`, that says the disk is full and names a file of
    the run (one of `names`); no traceback. With `cache` (a reply cache folder on the full disk), the
    cache's one warning may come before it."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    if cache is not None and len(cache_warnings(done.stderr, cache)) == 1:
        lines = lines[1:]
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith(f"kit {command}: "), line
    assert "disk full" in line and "No space left on device" in line, line
    assert any(name in line for name in names), (line, names)
    return line


def no_temporary_files(folder: Path) -> None:
    litter = [p.name for p in folder.rglob("*") if paths.TEMP_NAME.fullmatch(p.name) or p.name.endswith(".tmp")]
    assert not litter, litter


# --- generate ------------------------------------------------------------------------------------

def test_generate_on_a_full_disk_stops_with_one_line_keeps_what_it_had_and_resumes(small_disk, fake_openai,
                                                                                    tmp_path):
    disk = small_disk("1m")
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = disk.root / "data" / "c.jsonl"
    files = file_paths(out)

    def generate(num, cache):  # a fresh reply cache per run: only the journal can prevent a repeat
        return kit("generate", "--num", num, "--output", out, "--endpoint", srv.base_url, "--model", MODEL,
                   "--workers", 2, "--no-progress", env={"KIT_CACHE_DIR": str(tmp_path / cache)})

    first = generate(3, "cache-1")
    assert first.returncode == 0, first.stderr
    before = read_records(out).records
    manifest_before = files["manifest"].read_bytes()

    disk.fill(leave=8192)  # room for a few journal lines, not for 30 items
    full = generate(30, "cache-2")
    assert_disk_full_line(full, "generate", tuple(paths.display_path(p) for p in files.values()))
    # what the earlier run made is intact: its records are still the output's first ones, every file reads
    assert read_records(out).records[:3] == before
    assert files["manifest"].read_bytes() == manifest_before or json.loads(files["manifest"].read_text())
    journal = Journal(files["journal"]).load(truncate=False)
    assert {0, 1, 2} <= set(journal.entries) and len(journal.entries) < 30, sorted(journal.entries)
    no_temporary_files(disk.root)
    kept = len(journal.entries)
    asked = len(srv.chat_requests)

    disk.make_room()
    again = generate(30, "cache-3")
    assert again.returncode == 0, again.stderr
    assert f"{30 - kept} accepted" in again.stdout and f"{kept} already done" in again.stdout, again.stdout
    assert len(srv.chat_requests) - asked == 30 - kept  # a finished item is never asked again
    ids = [r["id"] for r in read_records(out).records]
    assert ids == [f"v2-0-{i:06d}" for i in range(30)]  # every item once, in index order
    assert json.loads(files["manifest"].read_text())["totals"]["in_output"] == 30
    no_temporary_files(disk.root)


def test_a_full_disk_under_the_reply_cache_loses_no_finished_item(small_disk, fake_openai):
    """The reply cache (KIT_CACHE_DIR) on the same full disk as the output: the cache may warn once and
    go on without caching, the journal then finds no room and the run stops with the same one line,
    and nothing the journal finished is lost or asked again."""
    disk = small_disk("1m")
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = disk.root / "data" / "c.jsonl"
    env = {"KIT_CACHE_DIR": str(disk.root / "cache")}
    argv = ["generate", "--num", 30, "--output", out, "--endpoint", srv.base_url, "--model", MODEL,
            "--workers", 2, "--no-progress"]

    assert kit(*argv[:2], 2, *argv[3:], env=env).returncode == 0
    disk.fill(leave=8192)
    full = kit(*argv, env=env)
    line = assert_disk_full_line(full, "generate", ("disk-0/",), cache=disk.root / "cache")
    assert "data/c.jsonl" in line, line  # the journal or the output stops the run, never the cache
    journal = Journal(file_paths(out)["journal"]).load(truncate=False)
    assert {0, 1} <= set(journal.entries)
    finished = {e["record"]["id"] for e in journal.entries.values()}
    no_temporary_files(disk.root)

    disk.make_room()
    asked = len(srv.chat_requests)
    again = kit(*argv, env=env)
    assert again.returncode == 0, again.stderr
    ids = [r["id"] for r in read_records(out).records]
    assert ids == [f"v2-0-{i:06d}" for i in range(30)] and set(ids) >= finished
    rerun = Counter(r.json["seed"] for r in srv.chat_requests[asked:])
    assert not set(rerun) & {api_seed(0, i, 0) for i in journal.entries}  # finished: never asked again
    assert set(rerun.values()) <= {1}
    no_temporary_files(disk.root)


def test_a_full_disk_under_the_reply_cache_alone_warns_once_and_the_run_finishes(small_disk, fake_openai, tmp_path):
    """The reply cache on a full disk, the output on a roomy one: one warning naming the cache folder and
    the error, then every item finished and written (the replies in flight are kept, not lost), exit 0."""
    disk = small_disk("1m")
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    cache = disk.root / "cache"
    out = tmp_path / "data" / "c.jsonl"
    disk.fill(leave=8192)  # room for an entry or two, not for 30
    done = kit("generate", "--num", 30, "--output", out, "--endpoint", srv.base_url, "--model", MODEL,
               "--workers", 4, "--no-progress", env={"KIT_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr
    assert len(cache_warnings(done.stderr, cache)) == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert [r["id"] for r in read_records(out).records] == [f"v2-0-{i:06d}" for i in range(30)]
    assert len(srv.chat_requests) == 30
    no_temporary_files(disk.root)


def test_a_failed_cache_write_warns_once_and_caches_nothing_more(tmp_path, monkeypatch, capsys):
    """Without a mount: the cache's writer meets ENOSPC (os.replace patched). It warns once on stderr,
    naming its folder and the error, leaves no temporary file, writes nothing more, and still answers
    from the entries it had written."""
    from kit.llm import cache as cache_module

    def reply(text: str) -> dict:  # what the client stores: a whole reply, or the cache reads a miss
        return {"text": text, "finish_reason": "stop", "model": "m", "endpoint": "http://127.0.0.1:1/v1",
                "prompt_tokens": 1, "completion_tokens": 1}

    cache = cache_module.ResponseCache(tmp_path / "cache")
    cache.put("aa" + "0" * 62, reply("kept"))
    cache.flush()
    replace, calls = os.replace, []

    def full(src, dst):
        calls.append(dst)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.os, "replace", full)
    for i in range(5):
        cache.put(f"b{i}" + "0" * 62, reply(f"lost {i}"))
        cache.flush()
    monkeypatch.setattr(cache_module.os, "replace", replace)
    cache.put("cc" + "0" * 62, reply("after"))
    cache.flush()

    err = capsys.readouterr().err
    assert err.count(CACHE_WARNING) == 1, err
    assert cache_warnings(err, tmp_path / "cache") and str(tmp_path / "cache") in err
    assert len(calls) == 1  # after the first failure no write is tried
    assert isinstance(cache.write_error, OSError) and cache.write_error.errno == errno.ENOSPC
    assert cache.get("aa" + "0" * 62) == reply("kept")  # reading goes on
    assert cache.get("b0" + "0" * 62) is None and cache.get("cc" + "0" * 62) is None
    no_temporary_files(tmp_path / "cache")


# --- judge ---------------------------------------------------------------------------------------

def test_judge_on_a_full_disk_stops_with_one_line_keeps_its_scores_and_resumes(small_disk, fake_openai, tmp_path):
    from test_judge import grade, index_of, make_records

    disk = small_disk("1m")
    N = 60  # about 13 KB of journal lines, three times the room left
    srv = fake_openai(lambda request, n_seen: Reply(content=grade()))
    data, few = tmp_path / "c.jsonl", tmp_path / "few.jsonl"
    write_records(data, make_records(N))
    write_records(few, make_records(5))
    out = disk.root / "scores.jsonl"
    journal_path = out.with_name(out.name + ".journal.jsonl")

    def judge(source, cache):  # a fresh reply cache per run: only the journal can prevent a repeat
        return kit("judge", source, "--out", out, "--endpoint", srv.base_url, "--model", MODEL, "--workers", 2,
                   "--no-progress", env={"KIT_CACHE_DIR": str(tmp_path / cache)})

    first = judge(few, "cache-1")
    assert first.returncode == 0, first.stderr
    before = out.read_text()

    disk.fill(leave=4096)
    full = judge(data, "cache-2")
    assert_disk_full_line(full, "judge", (paths.display_path(out),))
    assert out.read_text().startswith(before) or out.read_text() == before
    journal = ScoresJournal(journal_path).load(truncate=False)
    assert {0, 1, 2, 3, 4} <= set(journal.entries) and len(journal.entries) < N, sorted(journal.entries)
    no_temporary_files(disk.root)
    judged = set(journal.entries)
    asked = len(srv.chat_requests)

    disk.make_room()
    again = judge(data, "cache-3")
    assert again.returncode == 0, again.stderr
    assert f"{len(judged)} already done" in again.stdout, again.stdout
    rerun = [index_of(r.json) for r in srv.chat_requests[asked:]]
    assert sorted(rerun) == sorted(set(range(N)) - judged)  # each record not yet judged once, no other
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [f"conv-{i:03d}" for i in range(N)]
    no_temporary_files(disk.root)


# --- a finetune checkpoint -----------------------------------------------------------------------

def tiny_finetune(disk, tmp_path, checkpoint_every: int):
    """(output folder on the small disk, `finetune(steps)` running the real command on a tiny model)."""
    from tiny_lm import IDENTITY, make_tiny_model

    tiny = make_tiny_model(tmp_path / "tiny")
    out = disk.root / "ft"

    def finetune(steps):
        return kit("finetune", "--data", IDENTITY, "--out", out, "--base", tiny, "--steps", steps, "--lr", "3e-3",
                   "--batch-tokens", 256, "--checkpoint-every", checkpoint_every)

    return out, finetune


@pytest.mark.slow
def test_a_finetune_checkpoint_on_a_full_disk_keeps_the_last_one_and_the_rerun_resumes(small_disk, tmp_path):
    disk = small_disk("8m")
    out, finetune = tiny_finetune(disk, tmp_path, checkpoint_every=2)

    first = finetune(4)  # a finished folder: the old files a failed run must leave alone
    assert first.returncode == 0, first.stderr
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    trainable = int(re.search(r"lora \(([\d,]+) trainable\)", first.stdout).group(1).replace(",", ""))
    checkpoint = 3 * 4 * trainable  # float32 weights and AdamW's two moments, each as large
    # room for one checkpoint but not for the next beside it (a save keeps the previous until it is whole)
    disk.fill(leave=int(1.5 * checkpoint))
    full = finetune(8)
    assert_disk_full_line(full, "finetune", (paths.display_path(paths.staging_path(out)),))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert paths.staging_path(out).is_dir()  # the partial folder keeps the checkpoint to resume from
    no_temporary_files(disk.root)

    disk.make_room()
    again = finetune(8)
    assert again.returncode == 0, again.stderr
    assert "resuming from step 2" in again.stdout, again.stdout  # the checkpoint before the full disk was whole
    assert [h["step"] for h in json.loads((out / "history.json").read_text())] == list(range(1, 9))
    assert not paths.staging_path(out).exists()
    no_temporary_files(disk.root)


@pytest.mark.slow
def test_a_finetune_whose_final_save_meets_a_full_disk_leaves_the_old_folder_and_reruns(small_disk, tmp_path):
    """No checkpoint to fall back on (--checkpoint-every beyond the run): the model save at the end meets the
    full disk. safetensors and tokenizers report it as errors of their own; the line still says disk full."""
    disk = small_disk("8m")
    out, finetune = tiny_finetune(disk, tmp_path, checkpoint_every=100)

    first = finetune(2)
    assert first.returncode == 0, first.stderr
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    disk.fill(leave=(out / "model.safetensors").stat().st_size // 2)  # not room for the model's weights
    full = finetune(3)
    assert_disk_full_line(full, "finetune", (paths.display_path(paths.staging_path(out)),))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert not paths.staging_path(out).exists()  # nothing to resume from: nothing left behind
    no_temporary_files(disk.root)

    disk.make_room()
    again = finetune(3)
    assert again.returncode == 0, again.stderr
    assert [h["step"] for h in json.loads((out / "history.json").read_text())] == [1, 2, 3]
    no_temporary_files(disk.root)


# ---- a full disk under a write that is no checkpoint ---------------------------------------------

def test_a_full_disk_is_one_line_naming_the_file_and_keeps_earlier_data(tmp_path, fake_openai, monkeypatch,
                                                                        capsys):
    srv = fake_openai(lambda request, n_seen: Reply(content=GOOD))
    out = tmp_path / "c.jsonl"
    argv = ["--num", "3", "--output", str(out), "--endpoint", srv.base_url, "--model", MODEL, "--no-progress"]
    assert generate_main(argv) == 0
    before = out.read_bytes()
    capsys.readouterr()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    rc = generate_main([*argv, "--append", "--no-cache"])
    monkeypatch.setattr(os, "fsync", real_fsync)
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "No space left on device" in err
    assert "c.jsonl" in err and "Traceback" not in err
    assert out.read_bytes() == before and len(read_records(out).records) == 3
    Journal(file_paths(out)["journal"]).load()  # still readable
