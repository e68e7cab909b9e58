"""``accelerate launch -m modeling_rq2.evaluate``: processes share the corpus encoding, and a killed run resumes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from test_paper_datasets import write_msmarco

ROOT = Path(__file__).resolve().parents[1]
# the real CLI, with encode_passages counting its shards and, when asked, one process dying before a shard
WRAPPER = """
import os, runpy, sys
from modeling_rq2 import RQ2Retriever

original = RQ2Retriever.encode_passages
rank = os.environ.get("RANK", "0")

def encode(self, passages, *args, **kwargs):
    log = f"{os.environ['ENCODE_LOG']}.{rank}"
    done = len(open(log).read().split()) if os.path.exists(log) else 0
    if os.environ.get("KILL_RANK") == rank and done >= int(os.environ["KILL_AFTER"]):
        os._exit(9)
    result = original(self, passages, *args, **kwargs)
    with open(log, "a") as f:
        f.write(f"{len(passages)}\\n")
    return result

RQ2Retriever.encode_passages = encode
sys.argv = ["modeling_rq2.evaluate", *sys.argv[1:]]
runpy.run_module("modeling_rq2.evaluate", run_name="__main__")
"""


def _evaluate(args: list[str], log: Path, processes: int, **env) -> subprocess.CompletedProcess:
    script = log.parent / "wrapper.py"
    script.write_text(WRAPPER, encoding="utf-8")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),  # MULTI_CPU
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"] if processes > 1 else [sys.executable]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ENCODE_LOG": str(log),
                   "ACCELERATE_USE_CPU": "true", **env}
    return subprocess.run([*launch, str(script), *args], env=environment, capture_output=True, text=True, timeout=300)


def _shards_encoded(log: Path) -> int:
    return sum(len(p.read_text().split()) for p in log.parent.glob(f"{log.name}.*"))


def test_two_processes_encode_shards_and_a_killed_run_resumes(train_setup, tmp_path):
    root, _ = train_setup
    data = write_msmarco(tmp_path / "msmarco")  # 20 passages: 7 shards of 3
    common = ["--retriever", str(root / "retriever"), "--data", str(data), "--split", "dev.small", "--top_k", "20",
              "--batch_size", "4", "--shard_size", "3", "--rerank_top_k", "0"]
    index = tmp_path / "index"
    run = [*common, "--index_dir", str(index), "--output_dir", str(tmp_path / "eval")]

    killed = _evaluate(run, tmp_path / "killed", 2, KILL_RANK="1", KILL_AFTER="1")
    assert killed.returncode != 0 and not (tmp_path / "eval" / "metrics.json").exists()
    first = _shards_encoded(tmp_path / "killed")
    assert 1 <= first < 7 and len(list((index / "shards").glob("shard-*.npy"))) == first  # only whole shards on disk
    shares = {p.name: len(p.read_text().split()) for p in tmp_path.glob("killed.*")}
    assert shares["killed.1"] == 1 and 1 <= shares["killed.0"] <= 4  # shards 0, 2, 4, 6 are process 0's; 1, 3, 5 process 1's

    resumed = _evaluate(run, tmp_path / "resumed", 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _shards_encoded(tmp_path / "resumed") == 7 - first  # nothing encoded twice
    assert (index / "meta.json").is_file() and not (index / "shards").exists()  # removed once the index is saved

    alone = _evaluate([*common, "--output_dir", str(tmp_path / "alone")], tmp_path / "alone", 1)
    assert alone.returncode == 0, alone.stderr[-3000:]
    shared = json.loads((tmp_path / "eval" / "metrics.json").read_text())["results"]
    assert shared == json.loads((tmp_path / "alone" / "metrics.json").read_text())["results"]
    assert set(shared["retriever"]) == {"mrr@10", "success@50", "success@1000", "recall@1000"}
