"""Benchmark: the CPU an idle 2-worker Dask cluster takes, with Dask's defaults and with grading/dask.yaml.

    python -m bench.dask_idle              # 30 idle seconds each

A grading task is a sandboxed training in processes of its own, so whatever
the cluster's servers (scheduler, nannies, workers) spend between tasks is
taken from the trainings. Measures the CPU time of the `LocalCluster`'s
processes and of this one over `--seconds` idle seconds, for each setting.
Writes `bench/results/dask_idle.json` and prints a table.
"""

from __future__ import annotations

import argparse
import time

from bench.bench_inference import RESULTS, write_result


def idle_cpu_seconds(settings: dict, seconds: float) -> float:
    """CPU seconds the cluster's processes and this one spend over `seconds` idle seconds."""
    import dask
    import psutil
    from distributed import LocalCluster

    with (
        dask.config.set(settings),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None),
    ):
        me = psutil.Process()

        def total() -> float:
            return sum(sum(process.cpu_times()[:2]) for process in [me, *me.children(recursive=True)])

        time.sleep(5)  # Start-up done.
        start = total()
        time.sleep(seconds)
        return total() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="idle seconds measured (default: %(default)s)")
    args = parser.parse_args(argv)
    from grading.distributed import dask_settings

    runs = {"dask_defaults": {}, "grading_dask_yaml": dask_settings()}
    result = {"seconds": args.seconds, "runs": {}}
    print("| settings | CPU s | share of one core |\n|---|---:|---:|")
    for name, settings in runs.items():
        used = idle_cpu_seconds(settings, args.seconds)
        result["runs"][name] = {"cpu_seconds": round(used, 2), "core_share": round(used / args.seconds, 4)}
        print(f"| {name} | {used:.2f} | {used / args.seconds:.1%} |")
    write_result(result, RESULTS / "dask_idle.json")
    return result


if __name__ == "__main__":
    main()
