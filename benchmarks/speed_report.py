"""The statistics and reports of `speed.py`: per-round ratios and their median intervals, the
result tables, the speed goals, several runs pooled, and the bar chart."""

import math
import statistics

# This folder is on sys.path when a script here runs.
from gemm import describe_machine
from speed_cases import CASES, case_dtype


def _paired_ratio(numerators, denominators):
    """Median over rounds of `numerator / denominator` from the same round.

    The two calls of a round run seconds apart, so the machine's slow drift in speed (±20% over
    minutes on a shared host) cancels in each ratio; a ratio of medians would mix rounds.
    """
    return statistics.median(_round_ratios(numerators, denominators))


def _round_ratios(numerators, denominators):
    """`numerator / denominator` per round, for the median and its interval."""
    return [a / b for a, b in zip(numerators, denominators)]


def _median_interval(values, level=0.95):
    """Distribution-free interval for the median of `values`, from their order statistics.

    With n independent values, [x_(j+1), x_(n-j)] (sorted, 1-based) holds the true median with
    probability 1 - 2 P(Binomial(n, 1/2) <= j). Takes the narrowest such interval whose coverage
    is at least `level`; with too few values for that (n <= 5 at 95%) it is [min, max] and its
    coverage is lower. Returns (low, high, coverage).
    """
    xs = sorted(values)
    n = len(xs)

    def coverage(j):
        return 1 - 2 * sum(math.comb(n, i) for i in range(j + 1)) / 2**n

    j = 0
    while j + 1 < n / 2 and coverage(j + 1) >= level:
        j += 1
    return xs[j], xs[n - 1 - j], coverage(j)


def _round_times(result):
    """`(case, impl) -> per-round seconds` of a result's rows that recorded them."""
    return {(r["case"], r["impl"]): r["times_s"] for r in result["rows"] if r.get("times_s")}


def add_intervals(result):
    """Adds the median interval of every per-round ratio in `result` (also to older JSON files)."""
    times = _round_times(result)
    for row in result["rows"]:
        reference = times.get((row["case"], "transformers"))
        mine = times.get((row["case"], row["impl"]))
        row["vs_transformers_interval"] = None
        if reference and mine and row["impl"] != "transformers":
            row["vs_transformers_interval"] = _median_interval(_round_ratios(reference, mine))
    result["naflex_over_fixed_interval"] = {
        impl: _median_interval(_round_ratios(times["naflex_256", impl], times["fixed_256", impl]))
        for impl in result.get("naflex_over_fixed", {})
        if ("naflex_256", impl) in times and ("fixed_256", impl) in times
    }
    return result


def _fmt(value, spec):
    if value is None:
        return "-"
    return format(value, spec) + ("x" if spec == ".2f" else "")


def _fmt_ratio(value, interval):
    """`1.09x [1.03, 1.12]`: a median ratio and its interval."""
    if value is None:
        return "-"
    if not interval:
        return f"{value:.2f}x"
    return f"{value:.2f}x [{interval[0]:.2f}, {interval[1]:.2f}]"


def _percent(value):
    return "-" if value is None else f"{100 * value:.0f}%"


def print_table(result):
    peaks = result["matmul_gflops"]
    if result.get("machine"):
        print("\n" + describe_machine(result["machine"]), end="")
    if result.get("date"):
        print(f"\n{result['date']}: {result.get('command', '')}; devices: "
              f"{', '.join(result.get('devices', ['cpu']))}", end="")
    if peaks:
        print("\nfloat32 matmul peak (GFLOP/s, median over rounds): "
              + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())
              + f"; machine peak {result['machine_peak_gflops']:.1f}")
    else:
        print()
    header = ("| case | dtype | implementation | batch | median ms | per s | GFLOP/s "
              "| % machine peak | % own peak | vs transformers [interval] "
              "| max abs diff vs transformers |")
    print(header)
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        dtype = r.get("dtype") or case_dtype(r["case"])
        print(f"| {r['case']} | {dtype} | {r['impl']} | {r['batch']} | {r['median_s'] * 1e3:.0f} "
              f"| {r['per_s']:.2f} | {r['gflops']:.1f} | {_percent(r['of_machine_peak'])} "
              f"| {_percent(r['of_framework_peak'])} "
              f"| {_fmt_ratio(r['vs_transformers'], r.get('vs_transformers_interval'))} "
              f"| {_fmt(r['max_abs_diff'], '.1e')} |")
    coverages = {round(100 * r["vs_transformers_interval"][2]) for r in result["rows"]
                 if r.get("vs_transformers_interval")}
    if coverages:
        coverage = "/".join(map(str, sorted(coverages)))
        print(f"\n[low, high]: distribution-free interval for the median of the per-round ratios "
              f"(order statistics; covers it with probability {coverage}% over "
              f"{result['repeats']} rounds).")
    print_kernel_choices(result)


def print_kernel_choices(result):
    """The kernel choices each worker timed (`keras_siglip.backend.autotune`), one line each."""
    for backend, info in result.get("versions", {}).items():
        for d in info.get("kernel_choices", []):
            times = ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in d["seconds"].items())
            print(f"kernel choice on {backend}: {d['kind']} {tuple(d['key'])} -> {d['choice']} "
                  f"({times})")


def print_naflex_ratio(result):
    """NaFlex at a 256-patch budget against the fixed tower at 256 tokens, per implementation."""
    ratios = result.get("naflex_over_fixed")
    if ratios:
        intervals = result.get("naflex_over_fixed_interval", {})
        print("\nNaFlex@256 time / fixed@256 time (median of per-round ratios): " + ", ".join(
            f"{impl} {_fmt_ratio(ratio, intervals.get(impl))}" for impl, ratio in ratios.items()))


def goal_target(case, impl):
    """The speed ratio over transformers asked of `impl` on `case`, or None.

    Every keras backend: not slower (1.0x) than transformers on the B/16@224 tower at batch 1
    and 8 and on the two-tower forward, in float32 and in bfloat16; keras-jax 1.15x on the
    float32 tower at batch 1 and 8.
    """
    if not impl.startswith("keras-") or case not in CASES:
        return None
    spec = CASES[case]
    if spec["kind"] == "vision" and spec["image"] == 224 and spec["batch"] in (1, 8):
        return 1.15 if impl == "keras-jax" and case_dtype(case) == "float32" else 1.0
    return 1.0 if spec["kind"] == "two_tower" else None


def print_goals(result):
    """The speed goals, one line each: the median ratio, its interval and a verdict."""
    rows = {(r["case"], r["impl"]): r for r in result["rows"]}
    lines = []

    def ratio_line(case, impl):
        row = rows.get((case, impl))
        target = goal_target(case, impl)
        if not row or row.get("vs_transformers") is None or target is None:
            return
        median, interval = row["vs_transformers"], row.get("vs_transformers_interval")
        if median >= target:
            verdict = "met"
        elif target == 1.0 and interval and interval[1] >= 1.0:
            verdict = "not shown slower: below 1.00x, but the interval includes 1.00x"
        else:
            verdict = "NOT met"
        what = "not slower than" if target == 1.0 else f">= {target:.2f}x"
        lines.append(f"{impl} {case} {what} transformers: "
                     f"{_fmt_ratio(median, interval)} -> {verdict}")

    goal_cases = [c for c in CASES if goal_target(c, "keras-torch")]
    for impl in ("keras-jax", "keras-tensorflow", "keras-torch"):
        for case in goal_cases:
            ratio_line(case, impl)
    for case in goal_cases:
        row = rows.get((case, "keras-jax"))
        if row and row.get("of_machine_peak"):
            lines.append(f"keras-jax {case} share of the machine's float32 matmul peak: "
                         f"{100 * row['of_machine_peak']:.0f}%")
    intervals = result.get("naflex_over_fixed_interval", {})
    for impl, ratio in result.get("naflex_over_fixed", {}).items():
        if impl.startswith("keras-"):
            verdict = "met" if ratio <= 1.1 else "NOT met"
            lines.append(f"{impl} NaFlex@256 / fixed@256 <= 1.10x: "
                         f"{_fmt_ratio(ratio, intervals.get(impl))} -> {verdict}")
    if lines:
        print("\nSpeed goals (median of per-round ratios [interval]):")
        for line in lines:
            print("  " + line)


def pool_runs(results):
    """Each ratio to transformers across several recorded runs of the same cases.

    For every (case, implementation) timed beside transformers in at least one run: each run's
    median of per-round ratios, how many runs reach its goal, the median of all the
    runs' per-round ratios with its interval, and the ratio of the fastest rounds of each run
    (transformers' fastest time over the implementation's). Rounds of different runs are not
    exchangeable (a run's state of the machine moves its ratio as a whole), so the per-run count
    is the figure to judge by; the pooled interval assumes they are and is narrower than it
    should be.

    Returns a list of dicts, in the order the rows first appear.
    """
    pooled = {}
    for result in results:
        times = _round_times(result)
        for (case, impl), mine in times.items():
            reference = times.get((case, "transformers"))
            if impl == "transformers" or not reference:
                continue
            ratios = _round_ratios(reference, mine)
            entry = pooled.setdefault((case, impl), dict(case=case, impl=impl, runs=[],
                                                         ratios=[], fastest=[]))
            entry["runs"].append(statistics.median(ratios))
            entry["ratios"].extend(ratios)
            entry["fastest"].append(min(reference) / min(mine))
    summary = []
    for (case, impl), entry in pooled.items():
        target = goal_target(case, impl)
        low, high, coverage = _median_interval(entry["ratios"])
        summary.append(dict(
            case=case, impl=impl, target=target, run_medians=entry["runs"],
            runs_meeting=None if target is None else sum(m >= target for m in entry["runs"]),
            pooled_median=statistics.median(entry["ratios"]), pooled_interval=(low, high, coverage),
            rounds=len(entry["ratios"]), fastest_ratios=entry["fastest"]))
    return summary


def print_pooled(results, names):
    """Prints `pool_runs` as a table, after naming the runs and the machines that ran them."""
    machines = {describe_machine(r.get("machine")) or "machine: not recorded" for r in results}
    if len(machines) > 1:
        raise ValueError(
            "these runs come from different hosts, whose ratios do not pool: "
            + "; ".join(f"{n}: {describe_machine(r.get('machine')) or 'not recorded'}"
                        for n, r in zip(names, results))
            + ". Give runs of one host."
        )
    print(f"\nAcross {len(results)} runs ({', '.join(names)}):")
    print("  " + machines.pop())
    print("| case | implementation | goal | median per run | runs meeting it "
          "| pooled median [interval] (rounds) | fastest-round ratio per run |")
    print("|---|---|---:|---|---:|---:|---|")
    for entry in pool_runs(results):
        target = entry["target"]
        low, high, _ = entry["pooled_interval"]
        meeting = "-" if target is None else f"{entry['runs_meeting']} of {len(entry['run_medians'])}"
        print(f"| {entry['case']} | {entry['impl']} | {_fmt(target, '.2f')} "
              f"| {' / '.join(f'{m:.2f}x' for m in entry['run_medians'])} | {meeting} "
              f"| {entry['pooled_median']:.2f}x [{low:.2f}, {high:.2f}] ({entry['rounds']}) "
              f"| {' / '.join(f'{m:.2f}x' for m in entry['fastest_ratios'])} |")
    print("Rounds of different runs are not exchangeable (each run's machine state moves its "
          "ratio as a whole): judge by the runs, not by the pooled interval.")


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        by_case = {r["case"]: r for r in rows if r["impl"] == impl}
        xs = [c + (i - (len(impls) - 1) / 2) * width for c in range(len(cases))]
        gflops = [by_case[c]["gflops"] if c in by_case else 0 for c in cases]
        ratio = [by_case[c]["vs_transformers"] or 0 if c in by_case else 0 for c in cases]
        axes[0].bar(xs, gflops, width, label=impl)
        axes[1].bar(xs, ratio, width, label=impl)
    if result.get("machine_peak_gflops"):
        axes[0].axhline(result["machine_peak_gflops"], color="k", ls="--", lw=1,
                        label="machine float32 matmul peak")
    axes[0].set_ylabel("GFLOP/s (matmul FLOPs / median time)")
    axes[1].axhline(1.0, color="k", ls="--", lw=1)
    axes[1].set_ylabel("speed relative to transformers (higher is faster)")
    for ax in axes:
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases, rotation=20)
    axes[0].legend(fontsize=8, loc="lower right")
    machine = describe_machine(result.get("machine")).removeprefix("machine: ")
    fig.suptitle(f"SigLIP B/16 inference (float32 and bfloat16 cases), {result['threads']} "
                 f"threads, median of {result['repeats']} interleaved rounds\n{machine}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"[speed] wrote {path}")
