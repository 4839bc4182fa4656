"""The benchmark scripts run, and their statistics are right.

Timings themselves are not asserted (speed goals are met in `benchmarks/`, not by timed tests):
these tests check that `benchmarks/gemm.py` runs end to end and writes what it promises, that the
recorded speed runs still load and print, and that the median interval of `benchmarks/speed.py`
matches the textbook order-statistic ranks.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import gemm  # noqa: E402  (benchmarks/ is not a package)
import speed  # noqa: E402


def _binomial_coverage(n, low_rank, high_rank):
    """P(x_(low) <= median <= x_(high)) for n i.i.d. values (1-based ranks), computed directly."""
    return sum(math.comb(n, i) for i in range(low_rank, high_rank)) / 2**n


# (n, 1-based ranks of the 95% interval): the standard table of distribution-free confidence
# intervals for a median (e.g. Conover, Practical Nonparametric Statistics, table A3).
@pytest.mark.parametrize("n, low_rank, high_rank",
                         [(6, 1, 6), (10, 2, 9), (15, 4, 12), (17, 5, 13), (21, 6, 16)])
def test_median_interval_matches_order_statistic_table(n, low_rank, high_rank):
    # Values whose sorted position is their value, handed over unsorted.
    values = [float(v) for v in range(1, n + 1)]
    values = values[1::2] + values[0::2]
    low, high, coverage = speed._median_interval(values)
    assert (low, high) == (low_rank, high_rank)
    assert coverage == pytest.approx(_binomial_coverage(n, low_rank, high_rank), abs=1e-12)
    assert coverage >= 0.95
    # The next narrower interval would not reach 95%.
    assert _binomial_coverage(n, low_rank + 1, high_rank - 1) < 0.95


def test_median_interval_of_too_few_values_is_the_range():
    low, high, coverage = speed._median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (low, high) == (1.0, 5.0)
    assert coverage == pytest.approx(1 - 2 / 32)


def test_paired_ratio_pairs_rounds():
    # Per-round ratios 2, 1, 4, 3, 1.5 -> median 2; a ratio of medians would give 3 / 1.
    numerators = [2.0, 1.0, 4.0, 3.0, 3.0]
    denominators = [1.0, 1.0, 1.0, 1.0, 2.0]
    assert speed._paired_ratio(numerators, denominators) == 2.0


HISTORY = BENCHMARKS / "history"  # the runs behind "How we got here"
# Current runs beside the scripts, earlier ones in history/: paths relative to benchmarks/.
RECORDED_SPEED_RUNS = sorted(
    p.relative_to(BENCHMARKS).as_posix()
    for p in [*BENCHMARKS.glob("speed*.json"), *HISTORY.glob("speed*.json")]
)


def test_every_recorded_speed_run_is_checked():
    assert {"speed_spr.json", "history/speed_goals.json", "history/speed_avx512_goals.json",
            "history/speed_avx512_torch.json"} <= set(RECORDED_SPEED_RUNS)


@pytest.mark.parametrize("name", RECORDED_SPEED_RUNS)
def test_recorded_speed_runs_load_and_print(name, capsys):
    speed.main(["--from-json", str(BENCHMARKS / name)])
    out = capsys.readouterr().out
    result = json.loads((BENCHMARKS / name).read_text())
    for row in result["rows"]:
        dtype = row.get("dtype", "float32")  # runs recorded before cases had a dtype: float32
        assert f"| {row['case']} | {dtype} | {row['impl']} | {row['batch']} |" in out
        assert len(row["times_s"]) == result["repeats"]
    if any(row["impl"] == "transformers" for row in result["rows"]):
        assert "Speed goals" in out
    # Runs recorded since the machine field exists say which host ran them.
    if "machine" in result:
        assert gemm.describe_machine(result["machine"]) in out
        assert result["machine"]["cores"] >= 1


def test_goal_targets():
    assert speed.goal_target("vision_b8", "keras-jax") == 1.15
    assert speed.goal_target("vision_b1", "keras-jax") == 1.15
    assert speed.goal_target("vision_b8", "keras-torch") == 1.0
    assert speed.goal_target("vision_b32", "keras-tensorflow") is None  # goals: batch 1 and 8
    assert speed.goal_target("two_tower", "keras-jax") == 1.0
    # No ratio goal: the 256-token towers (NaFlex has its own goal against fixed@256), peers.
    assert speed.goal_target("fixed_256", "keras-jax") is None
    assert speed.goal_target("naflex_256", "keras-torch") is None
    assert speed.goal_target("vision_b8", "kerashub-jax") is None
    assert speed.goal_target("vision_b8", "transformers") is None


def _run(rows, machine="m"):
    return {"rows": [dict(case=c, impl=i, times_s=t) for c, i, t in rows],
            "machine": {"cpu": machine, "cores": 2, "simd": []}}


def test_pool_runs_keeps_runs_apart_and_pools_rounds():
    # Run 1: per-round ratios (transformers / keras-jax) 1.1, 1.0, 1.3 -> median 1.1;
    # run 2: 1.1, 1.4 -> median 1.25. keras-torch only in run 1, a peer without transformers'
    # rows in run 3 is skipped.
    run1 = _run([("vision_b8", "keras-jax", [1.0, 2.0, 1.0]),
                 ("vision_b8", "transformers", [1.1, 2.0, 1.3]),
                 ("vision_b8", "keras-torch", [1.5, 2.0, 1.3])])
    run2 = _run([("vision_b8", "transformers", [2.2, 1.4]),
                 ("vision_b8", "keras-jax", [2.0, 1.0])])
    run3 = _run([("vision_b8", "keras-jax", [1.0])])
    jax_row, torch_row = speed.pool_runs([run1, run2, run3])
    assert (jax_row["case"], jax_row["impl"], jax_row["target"]) == ("vision_b8", "keras-jax", 1.15)
    assert jax_row["run_medians"] == pytest.approx([1.1, 1.25])
    assert jax_row["runs_meeting"] == 1
    # The pooled median is over all five rounds: 1.0, 1.1, 1.1, 1.3, 1.4.
    assert jax_row["rounds"] == 5 and jax_row["pooled_median"] == pytest.approx(1.1)
    assert jax_row["pooled_interval"][:2] == pytest.approx((1.0, 1.4))
    # Fastest rounds: run 1 1.1 / 1.0, run 2 1.4 / 1.0.
    assert jax_row["fastest_ratios"] == pytest.approx([1.1, 1.4])
    assert torch_row["impl"] == "keras-torch" and torch_row["target"] == 1.0
    assert torch_row["run_medians"] == pytest.approx([1.0]) and torch_row["runs_meeting"] == 1


def test_several_recorded_runs_print_each_then_across_runs(capsys):
    names = ["speed_avx512_jax_b8_a.json", "speed_avx512_jax_b8_b.json"]
    speed.main(["--from-json", *[str(HISTORY / n) for n in names]])
    out = capsys.readouterr().out
    for name in names:
        assert f"== {HISTORY / name}" in out
    assert out.count("Speed goals") == 2
    assert "Across 2 runs (speed_avx512_jax_b8_a.json, speed_avx512_jax_b8_b.json):" in out
    assert "| vision_b8 | keras-jax | 1.15x | 1.30x / 1.14x | 1 of 2 |" in out
    assert "WARNING" not in out


def test_machine_info_reads_model_cores_and_simd(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n"
                       "flags\t\t: fpu sse2 avx2 fma avx512f avx512bw\n\n"
                       "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    machine = gemm.machine_info(str(cpuinfo))
    assert machine["cpu"] == "Test CPU 9000"
    assert machine["simd"] == ["avx2", "fma", "avx512f"]
    assert machine["cores"] >= 1
    assert gemm.describe_machine(machine) == (
        f"machine: Test CPU 9000, {machine['cores']} cores, SIMD avx2 fma avx512f")
    # Without /proc/cpuinfo the description still names the platform, with no SIMD listed.
    bare = gemm.machine_info(str(tmp_path / "missing"))
    assert bare["simd"] == [] and bare["cpu"]
    assert gemm.describe_machine(None) == ""


def _torch_has_onednn_linear():
    from keras_siglip.backend import available_torch_cpu_gemms

    return "onednn" in available_torch_cpu_gemms()


def test_gemm_script_runs_and_checks_its_products(tmp_path):
    """One round of numpy, JAX and torch's oneDNN linear (where torch has it) on every shape; the
    script checks each product against float64."""
    kernels = ("numpy", "jax") + (("torch-onednn",) if _torch_has_onednn_linear() else ())
    out = tmp_path / "gemm.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gemm.py"), "--kernels", *kernels,
         "--repeats", "1", "--warmup", "0", "--pause", "0", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [(r["shape"], r["kernel"]) for r in result["rows"]] == [
        (shape, kernel) for shape in gemm.SHAPES for kernel in kernels]
    for row in result["rows"]:
        m, k, n = gemm.SHAPES[row["shape"]]
        assert row["gflops"] == pytest.approx(2 * m * k * n / row["median_ms"] / 1e6)
        assert row["gflops"] > 0
    assert all(r["vs_numpy"] == 1.0 for r in result["rows"] if r["kernel"] == "numpy")
    assert "| qkv 1568x768x2304 | numpy |" in proc.stdout
    assert result["machine"] == gemm.machine_info()
    assert gemm.describe_machine(result["machine"]) in proc.stdout


def test_matmul_peaks_cover_the_kernel_keras_torch_runs():
    """The torch worker measures oneDNN's linear beside torch's matmul where torch has it, and each
    implementation's "% own peak" divides by the kernel it runs."""
    onednn = _torch_has_onednn_linear()
    assert speed._matmul_kernels("torch") == ["torch"] + (["torch-onednn"] if onednn else [])
    assert speed._matmul_kernels("jax") == ["jax"]
    # keras-torch picks addmm or oneDNN per shape by timing: its own peak is the faster of both.
    assert speed._own_kernels("keras-torch") == ["torch", "torch-onednn"]
    assert speed._own_kernels("transformers") == ["torch"]
    assert speed._own_kernels("keras-jax") == ["jax"]
    peaks = speed._matmul_timer(["numpy"])(reps=1)
    assert list(peaks) == ["numpy"] and peaks["numpy"] > 0


def test_bfloat16_gemms_run_and_check_their_products(tmp_path):
    """The bfloat16 table: JAX's keras-siglip dot and its bfloat16-result dot, checked against
    float64 products of the same (bfloat16-representable) operands."""
    out = tmp_path / "gemm_bf16.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gemm.py"), "--dtype", "bfloat16", "--kernels", "jax",
         "jax-plain", "--repeats", "1", "--warmup", "0", "--pause", "0", "--json", str(out)],
        capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bfloat16 GEMM" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {r["kernel"] for r in rows} == {"jax", "jax-plain"}
    assert all(r["vs_jax"] > 0 for r in rows)


def test_goals_cover_both_dtypes_at_batch_1_and_8():
    assert speed.goal_target("vision_b8", "keras-jax") == 1.15
    assert speed.goal_target("vision_b1", "keras-jax") == 1.15
    assert speed.goal_target("vision_b8_bf16", "keras-jax") == 1.0
    assert speed.goal_target("vision_b1_bf16", "keras-torch") == 1.0
    assert speed.goal_target("two_tower_bf16", "keras-tensorflow") == 1.0
    assert speed.goal_target("vision_b32", "keras-jax") is None
    assert speed.goal_target("vision_b8", "transformers") is None


def test_runs_of_different_hosts_are_not_pooled(capsys):
    runs = [json.loads((HISTORY / name).read_text())
            for name in ("speed_goals.json", "speed_avx512_goals.json")]
    assert gemm.describe_machine(runs[0].get("machine")) != gemm.describe_machine(
        runs[1].get("machine"))
    with pytest.raises(ValueError, match="different hosts"):
        speed.print_pooled(runs, ["a", "b"])
    code = speed.main(["--from-json", str(HISTORY / "speed_goals.json"),
                       str(HISTORY / "speed_avx512_goals.json")])
    assert code == 2
    assert "different hosts" in capsys.readouterr().err
