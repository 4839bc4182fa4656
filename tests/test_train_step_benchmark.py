"""`benchmarks/train_step.py` runs end to end on a tiny model, and its statistics are right.

Timings are not asserted. The run itself is: every implementation's first-step loss equals the
NumPy oracle's sigmoid loss of the same weights and batch, JAX and TensorFlow do not retrace
after the warm-up step, and the JSON and the table hold what the script promises.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import train_step  # noqa: E402  (benchmarks/ is not a package)
import train_workers  # noqa: E402

KERAS_IMPLS = ["keras-jax", "keras-tensorflow", "keras-torch"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One `--tiny --repeats 2` run of the default implementations: (JSON dict, stdout)."""
    out = tmp_path_factory.mktemp("train_step") / "run.json"
    command = [sys.executable, str(BENCHMARKS / "train_step.py"), "--tiny", "--repeats", "2",
               "--pause", "0", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _oracle_first_loss():
    """The sigmoid loss of step 1 from the NumPy oracle: same weights, same batch 0."""
    import keras_siglip_reference as R
    from keras_siglip.testing import random_tree

    model = train_workers.build_keras_model("tiny")
    params = random_tree(model, seed=0)  # what `randomize_weights(model, seed=0)` assigned
    batch = train_workers.step_batch("tiny", 0)
    return float(R.two_tower_loss(params, batch["images"], batch["token_ids"]))


def test_tiny_run_json_structure(tiny_run):
    result, _ = tiny_run
    assert [r["impl"] for r in result["rows"]] == KERAS_IMPLS + ["transformers"]
    assert (result["repeats"], result["warmup"], result["config"]) == (2, 1, "tiny")
    for key in ("cpu", "cores", "simd"):
        assert key in result["machine"]
    assert result["date"] and "--tiny --repeats 2" in result["command"]
    assert result["versions"]["torch"]["transformers"]
    assert result["versions"]["jax"]["jax"] and result["versions"]["tensorflow"]["tensorflow"]
    assert result["adamw"] == dict(learning_rate=1e-4, weight_decay=1e-4, beta_1=0.9,
                                   beta_2=0.999, epsilon=1e-8)
    optimizers = result["versions"]["torch"]["optimizers"]
    assert optimizers == {"keras-torch": "NonFiniteStepGuard (update through torch._fused_adam_)",
                          "transformers": "torch.optim.AdamW"}
    for row in result["rows"]:
        assert len(row["times_s"]) == 2 and len(row["losses"]) == 3
        assert row["median_s"] > 0 and row["examples_per_s"] > 0
        if row["impl"] == "transformers":
            assert row["vs_transformers"] is None
        else:
            low, high, coverage = row["vs_transformers_interval"]
            assert low <= row["vs_transformers"] <= high and 0 < coverage < 1
    torch_rows = {r["impl"]: r for r in result["rows"] if r["phases_s"]}
    assert set(torch_rows) == {"keras-torch", "transformers"}
    for row in torch_rows.values():
        assert set(row["phases_s"]) == {"forward", "loss", "backward", "optimizer", "other"}
        assert sum(row["phases_s"].values()) <= row["max_s"] * 1.001


def test_tiny_run_losses_agree_with_the_oracle(tiny_run):
    result, _ = tiny_run
    expected = _oracle_first_loss()
    assert result["first_step_agrees"]
    for row in result["rows"]:
        assert row["losses"][0] == pytest.approx(expected, rel=1e-5), row["impl"]
        assert row["loss_rel_diff"][0] <= 1e-4
        # Later steps drift apart only by rounding (JAX, torch) and, on TensorFlow, Keras'
        # second moment of the sparse embedding gradient (sum of squares over repeated ids).
        assert max(row["loss_rel_diff"]) < 1e-3, row["impl"]
    # Training moves the loss: the steps are applied, not repeated on the initial weights.
    assert all(abs(r["losses"][2] - r["losses"][0]) > 1e-3 for r in result["rows"])


def test_tiny_run_does_not_retrace(tiny_run):
    result, _ = tiny_run
    traces = {r["impl"]: r["traces"] for r in result["rows"]}
    assert traces == {"keras-jax": 0, "keras-tensorflow": 0, "keras-torch": None,
                      "transformers": None}


def test_tiny_run_prints_the_table(tiny_run, tmp_path):
    result, out = tiny_run
    assert "| implementation | median s/step [min, max] |" in out
    for row in result["rows"]:
        assert f"| {row['impl']} | {row['median_s']:.3f} " in out
    assert "Step-1 losses agree within 1e-04 relative." in out
    assert "Where a torch step goes" in out
    # The saved run prints the same table.
    path = tmp_path / "run.json"
    path.write_text(json.dumps(result))
    rc = subprocess.run([sys.executable, str(BENCHMARKS / "train_step.py"), "--from-json",
                         str(path)], capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0
    table = out[out.index("| implementation"):out.index("Median of")]
    assert table in rc.stdout


def _step(seconds, loss, timed=True):
    return dict(seconds=seconds, loss=loss, traces=0, phases=None, timed=timed)


def _summarise(steps):
    args = type("Args", (), dict(config="tiny", repeats=3, warmup=1, threads=2, argv=[],
                                 keras_eps=False))()
    impls = list(steps)
    return train_step.summarise(args, impls, steps, {}, {}, {})


def test_summarise_pairs_rounds_and_orients_the_costs():
    steps = {
        # Warm-up first (not timed), then 3 rounds.
        "keras-jax": [_step(60, 5.0, False), _step(1.0, 4.0), _step(2.0, 3.0), _step(1.0, 2.0)],
        "keras-jax-noguard": [_step(50, 5.0, False), _step(0.8, 4.0), _step(1.6, 3.0),
                              _step(0.5, 2.0)],
        "keras-jax-chunk4": [_step(50, 5.0, False), _step(1.5, 4.0), _step(2.2, 3.0),
                             _step(1.1, 2.0)],
        "transformers": [_step(3, 5.0, False), _step(2.0, 4.0), _step(2.0, 3.0),
                         _step(3.0, 2.002)],
    }
    result = _summarise(steps)
    rows = {r["impl"]: r for r in result["rows"]}
    # Per-round transformers / keras: 2, 1, 3 -> median 2 (a ratio of medians would give 2 / 1).
    assert rows["keras-jax"]["vs_transformers"] == 2.0
    assert rows["keras-jax"]["median_s"] == 1.0 and rows["keras-jax"]["first_step_s"] == 60
    assert rows["keras-jax"]["examples_per_s"] == 16.0
    costs = {c["what"]: c["ratio"] for c in result["costs"]}
    # Guard: guarded / plain per round = 1.25, 1.25, 2 -> 1.25 (> 1: the guard costs time).
    assert costs["guarded / plain AdamW"] == pytest.approx(1.25)
    # Chunked: chunk / dense per round = 1.5, 1.1, 1.1 -> 1.1.
    assert costs["SigmoidLoss(chunk_size=4) / dense loss"] == pytest.approx(1.1)
    # Losses against transformers': step 4 differs by 1e-3 relative.
    assert rows["keras-jax"]["loss_rel_diff"][3] == pytest.approx(0.002 / 2.002)
    assert result["first_step_agrees"]
    steps["keras-jax"][0] = _step(60, 5.001, False)
    assert not _summarise(steps)["first_step_agrees"]


def test_variants_and_memory_check():
    assert train_step.chosen_impls(["transformers", "keras-torch"], variants=False) == [
        "keras-torch", "transformers"]
    assert train_step.chosen_impls(["keras-torch"], variants=True) == [
        "keras-torch", "keras-torch-noguard", "keras-torch-chunk4"]
    assert train_workers.impl_backend("keras-tensorflow-noguard") == "tensorflow"
    assert train_workers.impl_variant("keras-tensorflow-chunk4") == "-chunk4"
    train_step.check_memory("b16", ["keras-jax", "transformers"], available=40.0)
    train_step.check_memory("b16", ["keras-jax"], available=None)
    with pytest.raises(SystemExit, match="need about 27 GB.*3.0 GB available.*--impls"):
        train_step.check_memory("b16", ["keras-jax", "keras-torch", "transformers"], 3.0)


def test_keras_equivalent_eps_gives_keras_adamw_update():
    """torch's AdamW with `keras_equivalent_eps` takes Keras' AdamW steps; with the same eps it
    does not where gradients are as small as eps (the difference the script's docstring states)."""
    import keras
    import numpy as np
    import torch

    hp = train_workers.ADAMW
    rng = np.random.default_rng(0)
    # Small weights: float32 resolves each step (~lr) of them to ~1e-10.
    start = (1e-3 * rng.standard_normal(64)).astype(np.float32)
    grads = [(rng.standard_normal(64) * 10.0 ** rng.uniform(-9, -3, 64)).astype(np.float32)
             for _ in range(5)]
    variable = keras.Variable(start)
    optimizer = keras.optimizers.AdamW(**hp)
    expected = []
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
        expected.append(np.array(keras.ops.convert_to_numpy(variable)))

    def torch_steps(keras_eps):
        p = torch.nn.Parameter(torch.from_numpy(start.copy()))
        opt = torch.optim.AdamW([p], lr=hp["learning_rate"], weight_decay=hp["weight_decay"],
                                betas=(hp["beta_1"], hp["beta_2"]), eps=hp["epsilon"])
        out = []
        for step, g in enumerate(grads, 1):
            if keras_eps:
                opt.param_groups[0]["eps"] = train_workers.keras_equivalent_eps(step)
            p.grad = torch.from_numpy(g)
            opt.step()
            out.append(p.detach().numpy().copy())
        return out

    moves = [e - start for e in expected]  # up to 5 * lr per element
    for got, want, move in zip(torch_steps(True), expected, moves):
        np.testing.assert_allclose(got - start, move, rtol=1e-5, atol=1e-9)
    plain = torch_steps(False)[0] - start
    assert np.max(np.abs(plain - moves[0])) > 0.1 * hp["learning_rate"]


RECORDED_TRAINING_RUNS = sorted(BENCHMARKS.glob("train_step*.json"))


@pytest.mark.parametrize("path", RECORDED_TRAINING_RUNS, ids=lambda p: p.name)
def test_recorded_training_runs_load_and_print(path):
    result = json.loads(path.read_text())
    assert result["machine"]["cpu"] and result["date"] and result["command"]
    rc = subprocess.run([sys.executable, str(BENCHMARKS / "train_step.py"), "--from-json",
                         str(path)], capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0, rc.stderr
    for row in result["rows"]:
        assert f"| {row['impl']} | {row['median_s']:.3f} " in rc.stdout
