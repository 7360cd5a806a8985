"""Time models: latency per batch and per image (median and inter-quartile spread over repeats,
after warm-up), throughput, achieved GFLOP/s as a fraction of this machine's measured
matrix-multiply peak, and peak memory. CPU always; CUDA too when present (or pick --device).

examples:
  cnnzoo profile resnet18 mobilenet_v2 --batch-size 1,32
  cnnzoo profile mobilenet_v2 --input-size 3,160,160 --threads 1 --channels-last --json
  cnnzoo profile resnet50 --weights torchvision        # the architecture those weights define
  cnnzoo profile mobilenet_v2 resnet18 --runtime torch,onnxruntime,int8 --threads 1   # where it will run

--runtime other than torch exports each model (ONNX, verified against eager PyTorch) and times it
in onnxruntime, fp32 or int8; the CPU is named, since what int8 gains depends on its vector units.
"""
from __future__ import annotations

import argparse
import json

from cnnzoo.cli.common import add_model_arguments, input_size, int_list, model_overrides
from cnnzoo.errors import UserError
from cnnzoo.export.formats import RUNTIMES
from cnnzoo.factory import create_model, create_model_with_args
from cnnzoo.profiling import summary
from cnnzoo.profiling.profile import format_profile_table, profile_models

HELP = "latency, throughput, achieved GFLOP/s and memory of one or more models"
TAKES_MODEL_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="registered model names")
    parser.add_argument("--batch-size", type=int_list, default=[1], help="comma-separated, e.g. 1,32 (default 1)")
    parser.add_argument("--input-size", type=input_size, default=None,
                        help="C,H,W or one size (default: each model's design size)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    parser.add_argument("--repeat", type=int, default=10, help="timed passes per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first (default 2)")
    parser.add_argument("--device", action="append", default=None,
                        help="cpu or cuda; repeatable (default: cpu, plus cuda when available)")
    parser.add_argument("--weights", help="build each model with these weights: 'torchvision' (alias "
                                          "'imagenet') or a weights file (their class count and layout apply)")
    parser.add_argument("--runtime", type=runtime_list, default=["torch"],
                        help="comma-separated: torch (default), torch-folded (BN folded, channels-last), "
                             "onnxruntime, int8 (onnxruntime static int8); the last three on the CPU, "
                             "and need `pip install 'cnnzoo[export]'` for onnxruntime")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    add_model_arguments(parser)


def runtime_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown runtime(s) {', '.join(unknown) or text!r}; "
                                         f"choose from {', '.join(RUNTIMES)}")
    return names


def run(args: argparse.Namespace) -> int:
    options = dict(batch_sizes=args.batch_size, input_size=args.input_size, devices=args.device,
                   threads=args.threads, channels_last=args.channels_last, repeats=args.repeat, warmup=args.warmup)
    others = [r for r in args.runtime if r != "torch"]
    if others and any(d != "cpu" for d in (args.device or ["cpu"])):
        raise UserError(f"--runtime {','.join(others)} runs on the CPU only; leave --device unset or use cpu")
    if others:
        options["devices"] = ["cpu"]
    if args.weights is None:
        report = profile_models(args.models, **options, **model_overrides(args)) if "torch" in args.runtime \
            else profile_models([], **options)
    else:
        report = _profile_with_weights(args, options)
    if others:
        _add_runtimes(report, args, others)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if "cpu" in report:
        cpu = report["cpu"]
        print(f"CPU: {cpu['model']}, {cpu['cores']} logical cores; {', '.join(cpu['extensions']) or 'no AVX2/AVX-512'}"
              + ("" if cpu["int8_dot_product"] else " (no int8 dot-product instructions: int8 gains little here)"))
    print(format_profile_table(report))
    return 0


def _add_runtimes(report: dict, args: argparse.Namespace, runtimes: list[str]) -> None:
    """Rows for each model under each exported runtime, beside PyTorch's own."""
    # imported here: the exporters bring onnx and onnxruntime, costly imports only --runtime needs
    from cnnzoo.export.cpu import cpu_info
    from cnnzoo.export.runtimes import prepare_runtime
    from cnnzoo.export.verify import ExportError

    report["cpu"] = cpu_info().to_dict()
    peak = report["matmul_peak_gflops"].get("cpu")
    for name in args.models:
        counted = summary(name, args.input_size, **model_overrides(args))
        for runtime in runtimes:
            model = name if args.weights is None else create_model(name, weights=args.weights,
                                                                   **model_overrides(args))
            try:
                prepared = prepare_runtime(model, runtime, input_size=counted.input_size, threads=args.threads,
                                           **(model_overrides(args) if args.weights is None else {}))
            except ExportError as err:
                raise UserError(f"{name} could not run under {runtime}: {err}") from None
            for batch in args.batch_size:
                lat = prepared.latency(batch, repeats=args.repeat, warmup=args.warmup)
                gflops = 2 * counted.macs * batch / lat.median_s / 1e9
                report["results"].append({
                    "model": f"{name} [{prepared.label}]", "runtime": runtime, "device": "cpu",
                    "input_size": list(counted.input_size), "batch_size": batch, "params": counted.total_params,
                    "macs_per_image": counted.macs,
                    **{k: v for k, v in lat.to_dict().items() if k not in ("batch_size", "device")},
                    "achieved_gflops": gflops, "fraction_of_peak": gflops / peak if peak else None,
                    "notes": list(prepared.notes)})


def _profile_with_weights(args: argparse.Namespace, options: dict) -> dict:
    """Each model as the weights build it (create_model with weights: their class count, a reference
    layout...), timed by profile_models, which rebuilds it from those arguments: the values of the
    weights do not change the work a forward pass does."""
    reports = []
    for name in args.models:
        model, model_args = create_model_with_args(name, weights=args.weights, **model_overrides(args))
        del model
        reports.append(profile_models([name], **options, **model_args))
    report = {**reports[0], "results": [r for rep in reports for r in rep["results"]], "weights": args.weights}
    return report
