"""The figures of a bench_gpu.py run as the Markdown rows of docs/benchmarks.md, "GPU targets".

    python benchmarks/gpu_table.py /work/.device/.../gpu.json

A GPU lease is short; this turns its JSON (``bench_gpu.py --json``, or the ``gpu.json.steps``
lines of a run cut off before the end) into the table to paste, each figure next to its target,
so that no number is copied by hand.
"""

import argparse
import json
from pathlib import Path


def _f(x, fmt="{:.3g}"):
    return "-" if x is None else fmt.format(x)


def load(path) -> dict:
    """The run's JSON; a ``.steps`` file (one JSON line per finished scale step) is read as the
    scale part of a run whose summary was never written."""
    text = Path(path).read_text()
    if str(path).endswith(".steps"):
        return {"scale": [json.loads(line) for line in text.splitlines() if line.strip()]}
    return json.loads(text)


def rows(d: dict) -> list[str]:
    out = []
    head = d.get("device", "?")
    dev = next((s.get("device") for s in d.get("scale", []) if s.get("step") == "system"), None)
    out.append(f"Device: {head}" + (f" ({dev})" if dev else "") + f"; JAX {d.get('jax', '?')}.")
    out.append("")
    table = ["| target | measured | met |", "| --- | --- | --- |"]
    t = d.get("targets", {})
    if "dense_ratio" in d:
        table.append(f"| dense float32 N = {d.get('dense_n', 10000):,} <= 1.5x XLA's write of the same bytes | "
                     f"{d['dense_ratio']:.2f}x ({d['dense_f32_s'] * 1e3:.1f} ms vs {d['write_floor_s'] * 1e3:.1f} ms) | "
                     f"{'yes' if t.get('dense_ratio_le_1.5') else 'no'} |")  # fmt: skip
        table.append(f"| N = {d.get('n787_n', 2483)} float32 Hessian <= 0.15 ms (device) | {d['n787_kernel_ms']:.3f} ms "
                     f"(public call {d['n787_public_call_ms']:.3f} ms) | "
                     f"{'yes' if t.get('n787_kernel_le_0.15ms') else 'no'} |")  # fmt: skip
    steps = {s["step"]: s for s in d.get("scale", [])}
    k1000 = steps.get("modes k=1000 float64")
    if k1000 is not None:
        got = f"refused: {k1000['refused']}" if "refused" in k1000 else f"{k1000['seconds']:.0f} s"
        met = t.get("moonshot_1000_modes_1e6_le_600s")
        table.append(f"| moonshot: lowest 1000 modes of 10^6 atoms < 600 s | {got} | {'yes' if met else 'no'} |")
    if d.get("correct") is not None:
        table.append(f"| float32 vs float64 (relative Frobenius) | {d['float32_vs_float64_rel']:.1e} | "
                     f"{'yes' if d['correct'] else 'no'} |")  # fmt: skip
    if len(table) > 2:
        out += table + [""]
    if "system" in steps:
        out.append(f"Scale part: {steps['system']['n_atoms']:,} atoms (Kob-Andersen glass, float64).")
        out.append("")
        out.append("| step | seconds | detail |")
        out.append("| --- | --- | --- |")
    for name, s in steps.items():
        if name == "system":
            continue
        if name == "bsr":
            out.append(f"| BSR Hessian | {s['first_call_s']:.2f} (first) / {s['second_call_s']:.2f} | "
                       f"{s['blocks']:,} blocks, {s['blocks_gb']:.2f} GiB; peak host RSS {s['peak_rss_gb']:.1f} GiB |")  # fmt: skip
        elif name == "bsr_check":
            out.append(f"| BSR vs central differences of the forces | {s['seconds']:.2f} | "
                       f"relative {s['fd_rel']:.1e} ({'ok' if s['ok'] else 'FAILED'}) |")  # fmt: skip
        elif "refused" in s:
            out.append(f"| {name} | - | refused: {s['refused']} |")
        else:
            batches = f", {s['batches']} batches of {s['batch']}" if s.get("batches", 1) > 1 else ""
            f32 = f", {s['iterations_float32']} float32 iterations" if s.get("iterations_float32") else ""
            out.append(f"| {name} | {s['seconds']:.1f} | {s['iterations']} iterations{f32}, {s['products']} products, "
                       f"{s['converged']} converged{batches}; largest relative residual {_f(s['max_rel_residual'], '{:.1e}')}; "
                       f"peak host RSS {s['peak_rss_gb']:.1f} GiB |")  # fmt: skip
    exit_ = d.get("scale_exit")
    if exit_ not in (None, 0):
        out.append("")
        out.append(f"Scale part: {exit_}.")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="bench_gpu.py's --json file (or its .steps file)")
    args = ap.parse_args(argv)
    print("\n".join(rows(load(args.json))))


if __name__ == "__main__":
    main()
