"""tests/parallel/test_cluster.py — the tessera cluster under mpirun, driven through its command line.

A coordinator (world rank 0) plus TP worker processes must give the tokens of a single process (TP = 1) on a
tiny oracle model at TP 1, 2, 4 and on SmolLM2 at TP 3; refuse TP sizes the model cannot take with a message
naming the sizes that work; and fail fast (non-zero exit within 10 s) when a worker is killed mid-generation.

Environment (set by ctest): TESSERA_BIN, TESSERA_ORACLES, TESSERA_DEFAULT_MODEL (optional).
"""
import json
import os
import signal
import subprocess
import time

import pytest

BIN = os.environ.get("TESSERA_BIN", "")
ORACLES = os.environ.get("TESSERA_ORACLES", "")
SMOL = os.environ.get("TESSERA_DEFAULT_MODEL", "")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1", TESSERA_LOG_LEVEL="warn")

pytestmark = pytest.mark.skipif(not BIN, reason="TESSERA_BIN is not set")


def generate(model, tp, *args, timeout=300):
    cmd = ([] if tp == 0 else MPIRUN + ["-np", str(tp + 1)]) + [BIN, "generate", "--model", model, "--output",
                                                                 "json", *args]
    if tp:
        cmd += ["--tp", str(tp)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def token_ids(proc):
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line)["token_ids"] for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(not ORACLES, reason="TESSERA_ORACLES is not set")
@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("model", ["llama_mha", "gpt2"])
def test_tiny_model_tokens_do_not_depend_on_tp(model, tp):
    path = os.path.join(ORACLES, model)
    ref = json.load(open(os.path.join(path, "reference.json")))
    for case in ref["cases"][:2]:
        prompt = ",".join(map(str, case["prompt_ids"]))
        single = token_ids(generate(path, 0, "--prompt-ids", prompt, "--max-tokens", "24", "--ignore-eos"))
        cluster = token_ids(generate(path, tp, "--prompt-ids", prompt, "--max-tokens", "24", "--ignore-eos"))
        assert cluster == single
        assert single[0] == case["greedy_ids"][:24]
        # seeded sampling is keyed by (seed, step) on TP rank 0, whatever the TP size
        sampled = ["--temperature", "0.8", "--top-p", "0.9", "--seed", "11"]
        assert token_ids(generate(path, tp, "--prompt-ids", prompt, "--max-tokens", "16", *sampled)) == token_ids(
            generate(path, 0, "--prompt-ids", prompt, "--max-tokens", "16", *sampled))


def cached_tokens(proc):
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line)["cached_tokens"] for line in proc.stdout.splitlines() if line.startswith("{")]


# Prefix caching (blocks of 4, one sequence at a time, so that each prompt finds the ones before it cached) changes
# no token, at TP 1 and in the cluster, greedy and seeded; and the cache was used.
@pytest.mark.skipif(not ORACLES, reason="TESSERA_ORACLES is not set")
@pytest.mark.parametrize("tp", [0, 2])
@pytest.mark.parametrize("model", ["llama_mha", "gpt2"])
def test_tiny_prefix_caching_changes_no_token(model, tp):
    path = os.path.join(ORACLES, model)
    prefix = list(range(10, 41))
    prompts = [",".join(map(str, prefix + [50 + i] * (1 + i))) for i in range(4)]
    args = [a for p in prompts for a in ("--prompt-ids", p)] + ["--max-tokens", "12", "--ignore-eos",
                                                                 "--max-running", "1", "--block-size", "4"]
    for sampling in ([], ["--temperature", "0.8", "--top-p", "0.9", "--seed", "5"]):
        off = generate(path, 0, *args, *sampling, "--no-prefix-caching")
        on = generate(path, tp, *args, *sampling)
        assert token_ids(on) == token_ids(off)
        assert cached_tokens(off) == [0, 0, 0, 0]
        assert cached_tokens(on) == [0, 28, 28, 28]  # the prefix's 7 whole blocks of 4 (31 tokens + the rest)


@pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
def test_smollm2_tp3_prefix_caching_gives_the_tokens_of_tp1():
    questions = ["What is the capital of France?", "Name three primary colors.", "What is 7 times 8?"]
    args = [a for q in questions for a in ("--prompt", q)] + ["--chat", "--max-tokens", "16", "--max-running", "1",
                                                               "--block-size", "4"]
    single = generate(SMOL, 0, *args, "--no-prefix-caching")
    cluster = generate(SMOL, 3, *args)
    assert token_ids(cluster) == token_ids(single)
    cached = cached_tokens(cluster)
    assert cached[0] == 0 and all(c >= 24 for c in cached[1:]), cached  # the chat template's system prompt


@pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
def test_smollm2_tp3_gives_the_tokens_of_tp1():
    args = ["--chat", "--prompt", "What is the capital of France?", "--max-tokens", "24"]
    single = generate(SMOL, 0, *args)
    cluster = generate(SMOL, 3, *args)
    assert token_ids(cluster) == token_ids(single)
    assert "Paris" in json.loads(cluster.stdout.splitlines()[-1])["text"]


@pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
def test_smollm2_logit_bias_and_stop_token_ids_on_the_command_line_at_tp3():
    # The API's logit_bias and stop_token_ids as `generate` flags, through the workers' sampler at TP 3.
    args = ["--chat", "--prompt", "What is the capital of France?", "--max-tokens", "6"]
    first = token_ids(generate(SMOL, 0, *args))[0]
    banned = token_ids(generate(SMOL, 3, *args, "--logit-bias", f"{first[0]}=-100"))[0]
    assert banned[0] != first[0]
    stopped = generate(SMOL, 0, *args, "--stop-token-ids", str(first[2]))
    assert token_ids(stopped)[0] == first[:3] and json.loads(stopped.stdout.splitlines()[-1])["finish_reason"] == "stop"
    bad = generate(SMOL, 0, *args, "--logit-bias", "12=lots")
    assert bad.returncode == 2 and "--logit-bias" in bad.stderr and "12=lots" in bad.stderr


@pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
def test_smollm2_refuses_tp2_naming_the_sizes_that_work():
    t0 = time.monotonic()
    proc = generate(SMOL, 2, "--prompt", "hi", "--max-tokens", "2", timeout=60)
    assert proc.returncode != 0
    assert "does not divide the 9 attention heads" in proc.stderr
    assert "sizes that work for this model: 1, 3" in proc.stderr
    assert time.monotonic() - t0 < 30


@pytest.mark.skipif(not ORACLES, reason="TESSERA_ORACLES is not set")
def test_tp_flag_must_match_the_processes():
    path = os.path.join(ORACLES, "llama_mha")
    alone = subprocess.run([BIN, "generate", "--model", path, "--prompt-ids", "1,2", "--tp", "2"],
                           capture_output=True, text=True, timeout=60, env=ENV)
    assert alone.returncode == 2 and "mpirun -np 3" in alone.stderr
    wrong = subprocess.run(MPIRUN + ["-np", "3", BIN, "generate", "--model", path, "--prompt-ids", "1,2", "--tp", "4"],
                           capture_output=True, text=True, timeout=60, env=ENV)
    assert wrong.returncode != 0 and "use mpirun -np 5" in wrong.stderr


def world_rank_of(pid):
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
            return int(kv.split(b"=")[1])
    return None


@pytest.mark.skipif(not SMOL, reason="TESSERA_DEFAULT_MODEL is not set")
def test_killing_a_worker_ends_the_job_nonzero_within_10s():
    cmd = MPIRUN + ["-np", "4", BIN, "generate", "--model", SMOL, "--prompt", "Tell me a long story.", "--chat",
                    "--ignore-eos", "--max-tokens", "4000", "--output", "text", "--tp", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        proc.stdout.read(20)  # tokens are streaming: the cluster is mid-generation
        victims = []
        deadline = time.monotonic() + 30
        while not victims and time.monotonic() < deadline:
            out = subprocess.run(["pgrep", "-f", BIN], capture_output=True, text=True).stdout.split()
            victims = [int(p) for p in out if world_rank_of(int(p)) == 2]
            time.sleep(0.1)
        assert victims, "no process with world rank 2"
        t0 = time.monotonic()
        os.kill(victims[0], signal.SIGKILL)
        code = proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
        err = proc.stderr.read().decode(errors="replace")
        assert code != 0
        assert elapsed < 10, f"took {elapsed:.1f} s"
        assert "rank 2" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()


def cuda_usable():
    """Whether this machine has a CUDA device (nvidia-smi lists one)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


@pytest.mark.skipif(not ORACLES, reason="TESSERA_ORACLES is not set")
def test_backend_flag_in_process_and_under_mpirun():
    path = os.path.join(ORACLES, "llama_mha")
    args = ["--prompt-ids", "1,2,3", "--max-tokens", "6", "--ignore-eos"]
    cpu = token_ids(generate(path, 0, *args, "--backend", "cpu"))
    # auto: the GPU when there is one (its fp32 check mode gives the CPU's greedy tokens), else the CPU
    assert token_ids(generate(path, 0, *args, "--backend", "auto", "--dtype", "fp32")) == cpu
    assert token_ids(generate(path, 2, *args, "--backend", "auto", "--dtype", "fp32")) == cpu
    bad = generate(path, 0, *args, "--backend", "gpu")
    assert bad.returncode != 0 and "--backend" in bad.stderr
    if cuda_usable():
        assert token_ids(generate(path, 0, *args, "--backend", "cuda", "--dtype", "fp32")) == cpu
        return
    # No GPU here: asking for one is one clear line and exit 2, in-process and from the workers under mpirun
    t0 = time.monotonic()
    alone = generate(path, 0, *args, "--backend", "cuda")
    assert alone.returncode == 2, alone.stderr
    assert "backend.kind cuda:" in alone.stderr
    cluster = generate(path, 2, *args, "--backend", "cuda", timeout=60)
    assert cluster.returncode != 0
    assert "backend.kind cuda:" in cluster.stderr and "tensor-parallel rank" in cluster.stderr
    assert time.monotonic() - t0 < 30
