"""torchrun on two CPU processes (Gloo, loopback): the same model as one process, one set of files,
exact resume, and errors that end the job instead of hanging it.

Layer norm (GroupNorm with one group: batch-independent and well conditioned at 1x1 maps, where 32
groups of 4 channels are not), no dropout, no augmentation: then two processes with half the
global batch each must compute what one process computes, up to float rounding.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

from cnnzoo.factory import create_model
from cnnzoo.training import load_checkpoint

DATA = "synthetic:classes=4,n=256,size=16"
ARGS = ["resnet18", "--data", DATA, "--width-mult", "0.25", "--norm", "layer", "--augment", "none",
        "--threads", "1", "--batch-size", "32", "--device", "cpu", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args, nproc=2, timeout=120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout)


def train_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnzoo", "train", *args], capture_output=True, text=True,
                          env=ENV, timeout=120)


def weights(path):
    return load_checkpoint(path).model_state


def test_two_processes_train_the_model_one_process_trains_and_write_one_set_of_files(tmp_path):
    two = torchrun("-m", "cnnzoo", "train", *ARGS, "--epochs", "2", "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = train_cli(*ARGS, "--epochs", "2", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]

    a, b = weights(tmp_path / "one" / "last.pt"), weights(tmp_path / "two" / "last.pt")
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-5, worst  # the same global batch, split in two: only float rounding differs

    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == ["best.pt", "curves.png", "history.csv", "history.json", "last.pt"]
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]
    assert two.stdout.count("best validation accuracy") == 1  # rank 0 alone speaks
    assert "images/s training" in two.stdout
    one_history = json.loads((tmp_path / "one" / "history.json").read_text())["epochs"]
    for mine, theirs in zip(history["epochs"], one_history):  # validation reduced exactly across processes
        assert abs(mine["val_acc"] - theirs["val_acc"]) < 1e-9 and abs(mine["val_loss"] - theirs["val_loss"]) < 1e-5


def test_a_killed_torchrun_job_resumes_exactly(tmp_path):
    epochs = ["--epochs", "12"]
    straight = torchrun("-m", "cnnzoo", "train", *ARGS, *epochs, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    # The same job, killed (every process, at once) once a few epochs are on disk ...
    cut = tmp_path / "cut"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cnnzoo", "train", *ARGS, *epochs, "--out", str(cut)]
    job = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        if (cut / "last.pt").exists() and load_checkpoint(cut / "last.pt").epoch >= 2:
            break
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    done = load_checkpoint(cut / "last.pt").epoch
    assert 2 <= done < 12, done  # killed part-way

    # ... and resumed under torchrun: the same weights as the uninterrupted job, bit for bit.
    resumed = torchrun("-m", "cnnzoo", "train", *ARGS, *epochs, "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(tmp_path / "straight" / "last.pt"), weights(cut / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _script(tmp_path, body: str):
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_processes_that_disagree_stop_with_one_message(tmp_path):
    job = _script(tmp_path, """
        import sys, torch
        from cnnzoo.errors import UserError
        from cnnzoo.training.distributed import Processes
        p = Processes.from_env()
        p.start(torch.device("cpu"))
        try:
            p.check_same("options", {"lr": 0.1 * (p.rank + 1), "epochs": 3})
        except UserError as err:
            if p.is_main:
                print("ERROR", err)
            sys.exit(2)
        finally:
            p.stop()
    """)
    result = torchrun(job)
    assert result.returncode != 0
    assert result.stdout.count("ERROR") == 1 and "disagree on the options (lr" in result.stdout


def test_a_dead_peer_ends_the_job_instead_of_hanging_it(tmp_path):
    job = _script(tmp_path, """
        import os, torch
        from cnnzoo.training.distributed import Processes
        p = Processes.from_env()
        p.start(torch.device("cpu"))
        if p.rank == 1:
            os._exit(3)   # killed before the collective
        p.barrier()       # rank 0 would wait here for ever without torchrun's supervision
    """)
    result = torchrun(job, timeout=90)  # a hang fails this test by raising TimeoutExpired
    assert result.returncode != 0


def test_wavenet_trains_under_torchrun_as_in_one_process(tmp_path):
    # The sequence task's loaders split windows across processes; WaveNet's last residual
    # convolution feeds nothing, which DistributedDataParallel must be told.
    csv = tmp_path / "series.csv"
    csv.write_text("step,value\n" + "".join(f"{i},{((i % 24) - 12) / 12:.4f}\n" for i in range(20000)))
    args = ["wavenet_small", "--data", str(csv), "--columns", "value", "--epochs", "2", "--batch-size", "4",
            "--threads", "1", "--quiet"]
    two = torchrun("-m", "cnnzoo", "train", *args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = train_cli(*args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "history.json").read_text())["epochs"]
    b = json.loads((tmp_path / "two" / "history.json").read_text())["epochs"]
    for mine, theirs in zip(b, a):
        assert abs(mine["train_loss"] - theirs["train_loss"]) < 1e-4
        assert abs(mine["val_loss"] - theirs["val_loss"]) < 1e-4


def test_googlenet_auxiliary_heads_train_under_torchrun_as_in_one_process(tmp_path):
    # DistributedDataParallel sees only forward; GoogLeNet's auxiliary heads are reached through
    # forward_train. Before TrainingForward, they kept their initial weights under torchrun.
    args = ["googlenet", "--aux-logits", "--data", "synthetic:classes=4,n=256,size=32", "--width-mult", "0.25",
            "--norm", "layer", "--augment", "none", "--threads", "1", "--batch-size", "32", "--epochs", "1", "--quiet",
            "--drop-rate", "0"]
    two = torchrun("-m", "cnnzoo", "train", *args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = train_cli(*args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    one, two = weights(tmp_path / "one" / "last.pt"), weights(tmp_path / "two" / "last.pt")
    torch.manual_seed(0)  # the trainer's initialisation (seed 0)
    start = create_model("googlenet", aux_logits=True, width_mult=0.25, norm="layer", num_classes=4).state_dict()
    # The heads' dropout (0.7, the paper's) draws other masks on two processes, so the two runs move
    # the heads by as much but not the same way; untrained heads would not move at all.
    for key in ("aux1.fc.weight", "aux2.fc.weight", "aux1.fc1.weight", "aux2.fc1.weight"):
        learned = (one[key] - start[key]).norm().item()
        assert learned > 1e-3, key
        assert (two[key] - start[key]).norm().item() > 0.5 * learned, key


def test_gradual_fine_tuning_under_torchrun_trains_as_in_one_process(tmp_path):
    # The backbone is frozen for the first epoch, then unfrozen: DistributedDataParallel, built
    # before either, must neither wait for the frozen gradients nor miss the unfrozen ones.
    start = train_cli(*ARGS, "--epochs", "1", "--out", str(tmp_path / "start"))
    assert start.returncode == 0, start.stderr[-3000:]
    args = [*ARGS, "--epochs", "3", "--weights", str(tmp_path / "start" / "best.pt"), "--finetune", "gradual"]
    two = torchrun("-m", "cnnzoo", "train", *args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = train_cli(*args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = weights(tmp_path / "one" / "last.pt"), weights(tmp_path / "two" / "last.pt")
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    events = [r.get("event") for r in json.loads((tmp_path / "two" / "history.json").read_text())["epochs"]]
    assert "unfroze the backbone at epoch 2" in events
