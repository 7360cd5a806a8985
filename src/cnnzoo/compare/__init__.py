"""Compare models side by side: real training runs on the user's data, one report.

    import cnnzoo
    result = cnnzoo.compare(["mobilenet_v2:width_mult=0.5", "vgg16_bn", "mobilenet_v1:image_size=96"],
                            data="path/to/flowers", image_size=64, repeats=3, out_dir="flowers-compare")
    print(result.table())              # result.models: one ModelRecord per model

    plan = plan_comparison(["resnet18", "vgg11_bn"], epochs=5)   # checked, loaded, estimated; nothing trained
    result = run_plan(plan, train=cnnzoo.train)                  # or any function with train's signature

See :func:`cnnzoo.compare.runner.compare` for the options and :mod:`cnnzoo.compare.report` for what
is written.
"""
import sys
import types

from cnnzoo.compare.analysis import best_trade_off, pareto_front, recommended, tied_with_best, verdict
from cnnzoo.compare.meta import ComparisonMeta
from cnnzoo.compare.plan import PLANS, choose_plan
from cnnzoo.compare.record import ModelRecord, SeedRun
from cnnzoo.compare.report import markdown_table, write_report
from cnnzoo.compare.runner import Comparison, ComparisonPlan, LatencySettings, compare, plan_comparison, run_plan

__all__ = ["compare", "plan_comparison", "run_plan", "ComparisonPlan", "Comparison", "ComparisonMeta",
           "LatencySettings", "ModelRecord", "SeedRun", "pareto_front", "best_trade_off", "tied_with_best",
           "recommended", "verdict", "write_report", "markdown_table", "PLANS", "choose_plan"]


class _CallableModule(types.ModuleType):
    """``cnnzoo.compare(...)`` keeps working once this package is imported: importing it binds the
    name ``cnnzoo.compare`` to the package, which is then called as the function."""

    def __call__(self, *args, **kwargs):
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
